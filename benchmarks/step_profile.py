"""Where the compiled training step's time goes as XLA runs it: per layer, forward and backward.

  python benchmarks/step_profile.py --config configs/seednet.py [--steps 5] [--top 12]

Traces --steps calls of the jitted `step.train_step` with `jax.profiler` (a Perfetto trace),
maps each op XLA ran back to the layer and pass that JAX wrote into the op's metadata (an op
of the backward pass has `transpose(` in its name; the loss's and optimizer's ops and those
XLA made without metadata, such as some kernel gradients' convolutions, are "other"), and
prints milliseconds per step by layer and pass, then the most
expensive ops with their HLO. Unlike `layer_profile.py`, which times each layer alone, this
is the step itself: XLA's fusions, its choice of kernels (a conv may run in the XNNPACK/YNN
library or in a slower generic loop), the optimizer. Only the ops of the program's entry
computation count (a loop's body is inside the loop's time), each as its mean over the
events recorded; on several threads ops can overlap, so the sum may exceed the step's wall
time, printed beside it. The profiler does not record every op in every run (on this CPU the
first conv of a short run went unrecorded at times): a row of 0.0 can mean that.
"""
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time
from collections import defaultdict

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import step_breakdown  # noqa: E402  (its --config and --steps flags)
from flax_cifar import allocator, models, xla_options
from flax_cifar.training import step as step_lib

FLAGS = flags.FLAGS
flags.DEFINE_integer('top', 12, 'Most expensive ops to list.')

NO_METADATA = 'ops without metadata'
INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$')


def parse_hlo(text: str) -> tuple[list[str], dict[str, str]]:
    """(the entry computation's instruction names, each instruction's line); a fusion or
    loop without metadata of its own takes the op name of the computation it calls."""
    computations, entry, current = defaultdict(list), None, None
    for line in text.splitlines():
        if not line.startswith(' ') and line.rstrip().endswith('{'):
            current = line.split()[1 if line.startswith('ENTRY') else 0].lstrip('%')
            entry = current if line.startswith('ENTRY') else entry
        elif (match := INSTRUCTION.match(line)) and current:
            computations[current].append((match.group(1), match.group(2)))
    lines = {name: body for instructions in computations.values() for name, body in instructions}
    for name, body in lines.items():
        called = re.search(r'(?:calls|body|to_apply)=%?([\w.\-]+)', body)
        if 'op_name=' not in body and called:
            inner = [b for _, b in computations.get(called.group(1), []) if 'op_name=' in b]
            lines[name] = body + (' ' + re.search(r'op_name="[^"]*"', inner[0]).group(0)
                                  if inner else '')
    return [name for name, _ in computations[entry]], lines


def layer_and_pass(body: str, layer_paths: list[str], model_name: str) -> tuple[str, str]:
    """The leaf layer (its path) that an op computes for, and 'forward', 'backward' or 'other'."""
    op_name = re.search(r'op_name="([^"]*)"', body)
    if not op_name:  # XLA made it (e.g. a kernel gradient's convolution): see its HLO
        return NO_METADATA, 'other'
    segments = op_name[1].split('/')
    inside = [i for i, s in enumerate(segments) if f'({model_name})' in s]
    if not inside:
        return 'loss, optimizer', 'other'
    rest = '/'.join(segments[inside[0] + 1:]) + '/'
    layer = max((p for p in layer_paths if rest.startswith(p + '/')), key=len, default='other')
    return layer, 'backward' if 'transpose(' in op_name[1] else 'forward'


def trace_events(log_dir: str) -> list[dict]:
    path = sorted(glob.glob(os.path.join(log_dir, '**', '*.trace.json.gz'), recursive=True))[-1]
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace['traceEvents'] if isinstance(trace, dict) else trace
    return [e for e in events if e.get('ph') == 'X']


def main(argv):
    del argv
    config = FLAGS.config
    model, state, batch = step_breakdown.random_setup(config)
    step = jax.jit(lambda s: step_lib.train_step(s, batch, jax.random.key(1),
                                              config.train.label_smoothing),
                   compiler_options=xla_options.training_options(config.train)).lower(state).compile()
    entry, lines = parse_hlo(step.as_text())
    paths = [row.path for row in models.layer_table(model)]
    jax.block_until_ready(step(state))  # warm up outside the trace
    with tempfile.TemporaryDirectory() as log_dir:
        jax.profiler.start_trace(log_dir, create_perfetto_trace=True)
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            jax.block_until_ready(step(state))
        wall_ms = (time.perf_counter() - start) / FLAGS.steps * 1000
        jax.profiler.stop_trace()
        events = trace_events(log_dir)

    # Each op of the entry computation runs once a step: its mean over the events recorded,
    # which stays right when the profiler misses the first ops of the trace.
    durations, entry = defaultdict(list), set(entry)
    for event in events:
        if event['name'] in entry:
            durations[event['name']].append(event['dur'] / 1000)
    per_op = {op: float(np.mean(ms)) for op, ms in durations.items()}
    table = defaultdict(float)
    for op, ms in per_op.items():
        table[layer_and_pass(lines[op], paths, type(model).__name__)] += ms
    print(f'{config.model} {dict(config.model_args)} batch {config.train.batch_size}, '
          f'jax {jax.__version__}, {jax.devices()[0].device_kind}: {wall_ms:.1f} ms a step '
          f'(wall), {sum(per_op.values()):.1f} ms of ops')
    passes = ('forward', 'backward', 'other')
    print(f"{'layer':32s}" + ''.join(f'{p + " ms":>13s}' for p in passes))
    for layer in paths + ['other', 'loss, optimizer', NO_METADATA]:
        if any(table[layer, p] for p in passes):
            print(f'{layer:32s}' + ''.join(f'{table[layer, p]:13.1f}' for p in passes))
    totals = {p: sum(ms for (_, q), ms in table.items() if q == p) for p in passes}
    print('sum', ', '.join(f'{p} {ms:.1f} ms' for p, ms in totals.items()))
    print(f'\nthe {FLAGS.top} most expensive ops (ms a step, layer, pass, HLO):')
    for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1])[:FLAGS.top]:
        layer, pass_ = layer_and_pass(lines[op], paths, type(model).__name__)
        hlo = re.sub(r',? (metadata|backend_config|frontend_attributes)=.*', '', lines[op])
        print(f'{ms:7.1f}  {layer} ({pass_})  {op} = {hlo[:140]}')


if __name__ == '__main__':
    allocator.reexec()  # as main.py trains: flax_cifar/allocator.py
    flags.mark_flags_as_required(['config'])
    app.run(main)
