"""The default network against its PyTorch twin (`airnet_torch.py`): real-epoch images/s of
JAX (`main.py` itself), PyTorch eager and `torch.compile`, alternated, medians and ratios.

  python benchmarks/twin.py --arrays /path/to/cifar10-arrays [--rounds 3] [--steps 16]

Each round runs the programs one after the other, each in its own process on the same
decoded training split: JAX trains `configs/default.py` for one epoch plus `--steps` steps and
the second epoch's training time is read from its metrics.jsonl (the first pays the
compiles); PyTorch times `--steps` steps after a warm-up. JAX runs as shipped (main.py sets
its allocator, flax_cifar/allocator.py) and with FLAX_CIFAR_MALLOC=system; PyTorch as its
users run it and with the allocator main.py sets. Needs PyTorch in this Python. Prints a
JSON line per measurement, then the medians and each round's ratios.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from flax_cifar import allocator

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BATCH = 1024


def jax_rate(arrays: str, steps: int, malloc: str) -> dict:
    env = {**os.environ, allocator.SWITCH: 'system'} if malloc == 'system' else None
    with tempfile.TemporaryDirectory() as workdir:
        subprocess.run([sys.executable, os.path.join(REPO, 'main.py'),
                        '--config', os.path.join(REPO, 'configs', 'default.py'),
                        '--workdir', workdir, f'--config.data.dataset=arrays:{arrays}',
                        '--config.train.epochs=2', '--config.checkpoint.every_steps=-1',
                        # 48 steps make an epoch of the 50,000 training images
                        f'--config.train.steps={50_000 // BATCH + steps}'],
                       check=True, capture_output=True, cwd=REPO, env=env)
        with open(os.path.join(workdir, 'metrics.jsonl')) as f:
            second = [json.loads(line) for line in f][1]
    return {'framework': 'jax', 'mode': 'jit', 'malloc': malloc, 'jax': metadata.version('jax'),
            'steps': steps,
            'epoch_images_per_s': round(steps * BATCH / second['epoch_time_s'], 1)}


def torch_rate(arrays: str, steps: int, compiled: bool, malloc: str) -> dict:
    """PyTorch's rate; malloc 'flax_cifar': under the allocator settings main.py gives JAX."""
    command = [sys.executable, os.path.join(HERE, 'airnet_torch.py'), '--arrays', arrays,
               '--steps', str(steps), '--warmup', '4', '--json'] + (['--compile'] * compiled)
    env = {**os.environ, **allocator.settings()} if malloc == 'flax_cifar' else None
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return {'malloc': malloc, **json.loads(out.strip().splitlines()[-1])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arrays', required=True,
                        help='decoded arrays (python -m flax_cifar.data.to_arrays)')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--steps', type=int, default=16, help='timed steps of 1024 images')
    parser.add_argument('--no_compile', action='store_true', help='eager PyTorch only')
    args = parser.parse_args()
    programs = {'jax': lambda: jax_rate(args.arrays, args.steps, 'flax_cifar'),
                'jax, system malloc': lambda: jax_rate(args.arrays, args.steps, 'system'),
                'eager': lambda: torch_rate(args.arrays, args.steps, False, 'system'),
                'eager, same malloc': lambda: torch_rate(args.arrays, args.steps, False,
                                                         'flax_cifar')}
    if not args.no_compile:
        programs['compile'] = lambda: torch_rate(args.arrays, args.steps, True, 'system')
        programs['compile, same malloc'] = lambda: torch_rate(args.arrays, args.steps, True,
                                                              'flax_cifar')
    print(json.dumps({'flax_cifar_malloc': allocator.settings()}), flush=True)
    rates = {name: [] for name in programs}
    for round_ in range(args.rounds):
        for name, measure in programs.items():
            result = {'round': round_, **measure()}
            print(json.dumps(result), flush=True)
            rates[name].append(result['epoch_images_per_s'])
    medians = {name: statistics.median(r) for name, r in rates.items()}
    print(json.dumps({'medians': medians}))
    for name in rates:
        if not name.startswith('jax'):
            per_round = [round(j / t, 3) for j, t in zip(rates['jax'], rates[name])]
            print(f'JAX / PyTorch {name}: {medians["jax"] / medians[name]:.2f}x by the medians '
                  f'(rounds {per_round})')


if __name__ == '__main__':
    main()
