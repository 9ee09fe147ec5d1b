"""Runs a list or grid of config overrides x seeds, then tabulates and plots the results.

  python -m flax_cifar.sweep SWEEP_FILE --root sweeps/NAME [--parallel N] [--gpus 0,1]
      [--override data.dataset=folder:/data/cifar10]
  python -m flax_cifar.sweep SWEEP_FILE --root sweeps/NAME --collect_only

SWEEP_FILE is a Python file whose `get_sweep()` returns a dict:
  config:    the config file every run starts from (relative to the repository, or absolute)
  overrides: {flattened key: value} for every run, e.g. {'train.epochs': 5} for a proxy
  runs:      {name: {flattened key: value}}, one design each (its own config file under
             the key 'config', where designs come from different files); or
  grid:      {flattened key: [values]}, one run per combination
  seeds:     [0, 1, 2]
Each (run, seed) trains with `main.py` in <root>/<name>_s<seed>, so a stopped sweep resumes
where each run stopped and finished runs are skipped. The results come from the runs' own
metrics.jsonl: <root>/results.md, results.csv and frontier.png (test accuracy against
parameters and against training time).
"""
import argparse
import ast
import csv
import importlib.util
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import ml_collections
from etils import epath

from flax_cifar import storage
from flax_cifar.workdir import compat

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DONE = 'sweep_done.json'  # written into a run's workdir when main.py exits 0


def load_module(path: str):
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0],
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def repo_path(path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(REPO, path)


def expand(sweep: dict) -> list[tuple[str, str, dict]]:
    """[(name, config file, overrides)]: the named runs, or one per grid combination, the
    common overrides first."""
    common = dict(sweep.get('overrides', {}))
    if ('runs' in sweep) == ('grid' in sweep):
        raise SystemExit('error: a sweep file gives `runs` or `grid`, exactly one')
    if 'runs' in sweep:
        return [(name, overrides.get('config', sweep['config']),
                 {**common, **{k: v for k, v in overrides.items() if k != 'config'}})
                for name, overrides in sweep['runs'].items()]
    keys = list(sweep['grid'])
    runs = []
    for values in itertools.product(*(sweep['grid'][k] for k in keys)):
        name = ','.join(f'{k.split(".")[-1]}={_short(v)}' for k, v in zip(keys, values))
        runs.append((name, sweep['config'], {**common, **dict(zip(keys, values))}))
    return runs


def _short(value) -> str:
    return ''.join(str(value).split()).replace("'", '')


def build_config(config_file: str, overrides: dict) -> ml_collections.ConfigDict:
    if REPO not in sys.path:
        sys.path.insert(0, REPO)  # config files import configs.default
    config = load_module(repo_path(config_file)).get_config()
    for key in overrides:  # update_from_flattened_dict would add an unknown top-level key
        node = config
        for part in key.split('.'):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                moved = compat.moved_key(key)
                raise KeyError(f'{key!r}: now {moved!r}' if moved else
                               f'{key!r}: {config_file} has no such field')
            node = node[part]
    config.update_from_flattened_dict(overrides)
    return config


def parse_override(text: str) -> tuple[str, object]:
    """'key=value' -> (key, value): a Python literal where it reads as one, else the text."""
    key, sep, value = text.partition('=')
    if not sep:
        raise SystemExit(f'error: --override {text!r} is not KEY=VALUE')
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def flag_value(value) -> str:
    return repr(value) if isinstance(value, tuple) else str(value)


def command(config_file: str, overrides: dict, seed: int, workdir: str) -> list[str]:
    return [sys.executable, os.path.join(REPO, 'main.py'), '--config', repo_path(config_file),
            f'--workdir={workdir}', f'--config.seed={seed}',
            *(f'--config.{key}={flag_value(value)}' for key, value in overrides.items())]


def run_one(job: dict, gpu: str | None) -> tuple[str, int]:
    """Trains one (run, seed) unless it finished before; its output goes to <workdir>.log."""
    workdir = job['workdir']
    if epath.Path(storage.join(workdir, DONE)).exists():
        return workdir, 0
    env = dict(os.environ)
    if gpu is not None:
        env['CUDA_VISIBLE_DEVICES'] = gpu
    print(f'start {os.path.basename(workdir)}', flush=True)
    log_path = workdir + '.log'
    # An object cannot be appended to: a gs:// root's log is written here, then uploaded.
    local_log = (os.path.join(tempfile.mkdtemp(), 'run.log') if storage.is_remote(log_path)
                 else log_path)
    with open(local_log, 'a') as log:
        code = subprocess.run(job['command'], stdout=log, stderr=subprocess.STDOUT,
                              env=env).returncode
    if local_log != log_path:
        earlier = epath.Path(log_path).read_bytes() if epath.Path(log_path).exists() else b''
        storage.write_atomic(log_path, earlier + open(local_log, 'rb').read())
    if code == 0:
        storage.write_atomic(storage.join(workdir, DONE), json.dumps({'command': job['command']}))
    print(f'{"done" if code == 0 else f"FAILED ({code})"} {os.path.basename(workdir)}',
          flush=True)
    return workdir, code


def run_all(jobs: list[dict], parallel: int, gpus: list[str]) -> list[str]:
    """Runs the jobs `parallel` at a time (slot i on gpus[i] where given); the failures."""
    slots = [gpus[i] if gpus else None for i in range(parallel)]
    free = list(range(parallel))

    def in_slot(job):
        slot = free.pop()
        try:
            return run_one(job, slots[slot])
        finally:
            free.append(slot)

    with ThreadPoolExecutor(parallel) as pool:
        return [workdir for workdir, code in pool.map(in_slot, jobs) if code != 0]


def parameter_count(config: ml_collections.ConfigDict) -> int:
    import jax
    import jax.numpy as jnp

    from flax_cifar import models
    from flax_cifar.state import train_state
    model = train_state.model_of(config)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    return models.param_count(shapes['params'])


def read_result(workdir: str) -> dict | None:
    """Final test accuracy, epochs and training seconds of a finished run, else None."""
    if not epath.Path(storage.join(workdir, DONE)).exists():
        return None
    from flax_cifar.workdir import metric_writers
    records = metric_writers.read_records(storage.join(workdir, 'metrics.jsonl'))
    if not records:
        return None
    return {'accuracy': records[-1]['test_accuracy'], 'epochs': len(records),
            'minutes': sum(r['epoch_time_s'] for r in records) / 60}


def summarize(runs: list[tuple[str, str, dict]], sweep: dict, root: str) -> list[dict]:
    """One row per run: its overrides, parameters and each seed's result."""
    rows = []
    for name, config_file, overrides in runs:
        results = [read_result(os.path.join(root, f'{name}_s{seed}')) for seed in sweep['seeds']]
        done = [r for r in results if r]
        accuracies = [100 * r['accuracy'] for r in done]
        rows.append({
            'name': name, 'overrides': json.dumps(overrides, default=str),
            'params': parameter_count(build_config(config_file, overrides)),
            'seeds_done': f'{len(done)}/{len(results)}',
            'accuracy_per_seed': ' '.join(f'{a:.2f}' for a in accuracies),
            'mean_accuracy': round(statistics.mean(accuracies), 2) if done else None,
            'std_accuracy': round(statistics.stdev(accuracies), 2) if len(done) > 1 else None,
            'epochs': done[0]['epochs'] if done else None,
            'mean_minutes': round(statistics.mean(r['minutes'] for r in done), 1) if done
            else None})
    return rows


def write_tables(rows: list[dict], root: str) -> None:
    table = io.StringIO(newline='')
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    storage.write_atomic(storage.join(root, 'results.csv'), table.getvalue())
    columns = list(rows[0])
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    for row in sorted(rows, key=lambda r: -(r['mean_accuracy'] or 0)):
        lines.append('| ' + ' | '.join('' if row[c] is None else str(row[c]).replace('|', '/')
                                       for c in columns) + ' |')
    storage.write_atomic(storage.join(root, 'results.md'), '\n'.join(lines) + '\n')


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise SystemExit(f'error: {message} (see python -m flax_cifar.sweep --help)')


def load_sweep(path: str) -> dict:
    """The dict of a sweep file's get_sweep(), or one line saying why there is none."""
    if not os.path.isfile(path):
        raise SystemExit(f'error: sweep file {path}: no such file')
    try:
        sweep = load_module(path).get_sweep()
    except AttributeError as e:
        raise SystemExit(f'error: sweep file {path}: {e}') from None
    except SyntaxError as e:
        raise SystemExit(f'error: sweep file {path}: {e}') from None
    if not isinstance(sweep, dict):
        raise SystemExit(f'error: sweep file {path}: get_sweep() returned {type(sweep).__name__}, '
                         'not a dict')
    return sweep


def main(argv=None):
    parser = _Parser(prog='python -m flax_cifar.sweep', description=__doc__.split('\n')[0])
    parser.add_argument('sweep_file')
    parser.add_argument('--root', required=True, help='one workdir per (run, seed) under it')
    parser.add_argument('--parallel', type=int, default=1, help='runs at a time')
    parser.add_argument('--gpus', default='', help='comma-separated: run slot i sees GPU i')
    parser.add_argument('--override', action='append', default=[], metavar='KEY=VALUE',
                        help='for every run, e.g. data.dataset=folder:/data/cifar10 (repeatable)')
    parser.add_argument('--collect_only', action='store_true',
                        help='tabulate the finished runs without training')
    args = parser.parse_args(argv)
    if REPO not in sys.path:
        sys.path.insert(0, REPO)  # sweep and config files import configs.*
    sweep = load_sweep(args.sweep_file)
    sweep.setdefault('seeds', [0])
    sweep['overrides'] = {**sweep.get('overrides', {}),
                          **dict(parse_override(o) for o in args.override)}
    runs = expand(sweep)
    gpus = [g for g in args.gpus.split(',') if g]
    if gpus and len(gpus) < args.parallel:
        raise SystemExit(f'error: --gpus names {len(gpus)} GPUs for --parallel={args.parallel}')
    for name, config_file, overrides in runs:  # a bad key fails here, before any training
        try:
            build_config(config_file, overrides)
        except (KeyError, AttributeError, TypeError) as e:
            raise SystemExit(f'error: sweep run {name!r}: override {e.args[0]}') from None
    epath.Path(args.root).mkdir(parents=True, exist_ok=True)
    failed = []
    if not args.collect_only:
        jobs = [{'workdir': os.path.join(args.root, f'{name}_s{seed}'),
                 'command': command(config_file, overrides, seed,
                                    os.path.join(args.root, f'{name}_s{seed}'))}
                for name, config_file, overrides in runs for seed in sweep['seeds']]
        failed = run_all(jobs, args.parallel, gpus)
    rows = summarize(runs, sweep, args.root)
    write_tables(rows, args.root)
    from flax_cifar import plots  # the sweep controller itself starts without matplotlib
    plot = plots.plot_frontier(rows, args.root)
    print(epath.Path(storage.join(args.root, 'results.md')).read_text())
    print(f'Tables: {args.root}/results.md, results.csv; plot: {plot}')
    if failed:
        raise SystemExit(f'error: {len(failed)} run(s) failed; see their logs: '
                         + ', '.join(w + '.log' for w in failed))


if __name__ == '__main__':
    main()
