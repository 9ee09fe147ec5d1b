"""Throughput of any config on this machine: the jitted step, a real epoch, evaluation, compile.

  python benchmarks/throughput.py --config configs/seed.py \
      --config.dataset=folder:/path/to/cifar10 [--config.batch_size=128] [--json]

Measures, through the same functions `main.py` trains with (`train.setup_run`):
  startup_s           from this command's start to the end of the first training step:
                      imports, data loading (decoded-folder cache included), compile
  compile_s           XLA compilation of the train step (a load from disk once the persistent
                      compilation cache holds it, as main.py uses it)
  train_images_per_s  the jitted step alone, on the device-resident training split
  epoch_images_per_s  one real epoch (`Run.train_epoch`: epoch order, host bookkeeping,
                      progress and metrics, config.steps_per_dispatch steps per call) over
                      the config's dataset
  eval_images_per_s   the whole test split through the evaluation step
  flops_per_image     XLA's cost analysis of the train step (forward, backward, update) / batch
  gflops_per_s        flops_per_image x train_images_per_s
One row per measurement; with --json, one JSON object with these keys and the setting.
"""
import time

START = time.time()  # before the heavy imports: they are part of the time to the first step

import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from flax_cifar import data_parallel, host_data, models, train, xla_options  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration.', lock_config=True)
flags.DEFINE_integer('steps', 20, 'Timed steps per repeat of the pure-step measurement.')
flags.DEFINE_integer('repeats', 3, 'Repeats of the pure-step measurement (median reported).')
flags.DEFINE_integer('epoch_steps', -1, 'Steps of the real epoch (-1: a whole epoch).')
flags.DEFINE_bool('compilation_cache', True, 'Use the persistent compilation cache, as main.py '
                  'does (--nocompilation_cache: a cold start).')
flags.DEFINE_bool('json', False, 'Print one JSON object instead of rows.')
flags.DEFINE_enum('depthwise_implementation', None, list(models.IMPLEMENTATIONS),
                  'How true depthwise convs compute (default: the model\'s, "auto": by backend).')


def train_step_flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # one entry per program in older JAX versions
        analysis = analysis[0]
    return float(analysis['flops'])


def time_steps(run, state, order, first_index: int):
    """Median images/s over FLAGS.repeats windows of FLAGS.steps steps (after a warm-up)."""
    images, labels = run.train
    index = first_index
    rates = []
    for _ in range(FLAGS.repeats + 1):  # the first window warms caches and is dropped
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            state, metrics = run.train_fn(state, images, labels, order, index % run.steps_per_epoch)
            index += 1
        jax.block_until_ready(metrics)
        rates.append(FLAGS.steps * run.config.batch_size / (time.perf_counter() - start))
    return state, statistics.median(rates[1:])


def measure(config) -> dict:
    config = config.copy_and_resolve_references()
    if FLAGS.depthwise_implementation:
        with config.unlocked():
            config.model_args.depthwise_implementation = FLAGS.depthwise_implementation
    config.checkpoint_every_steps = -1
    with tempfile.TemporaryDirectory() as workdir:
        run, state, _, _ = train.setup_run(config, workdir)
        images, labels = run.train
        order = data_parallel.by_host(run.mesh, data_parallel.host_block(
            host_data.epoch_order(config.seed, 0, run.num_train_examples, run.shards)))

        start = time.perf_counter()
        compiled = run.train_fn.lower(state, images, labels, order, 0).compile()
        compile_s = time.perf_counter() - start
        state, metrics = run.train_fn(state, images, labels, order, 0)
        jax.block_until_ready(metrics)
        startup_s = time.time() - START

        state, train_rate = time_steps(run, state, order, first_index=1)

        # A few steps of epoch 1 first, so that the loop's one-time compiles (metrics, learning
        # rate) stay out of the timed epoch 2, as they stay out of every epoch after a run's first.
        def run_epoch(state, epoch, steps):
            first = epoch * run.steps_per_epoch
            quiet = dataclasses.replace(run, is_chief=False, total_steps=first + steps)
            return quiet.train_epoch(state, first, epoch, train.EpochSums(), lambda: False)[0]

        state = run_epoch(state, 1, config.log_every_steps)
        steps = run.steps_per_epoch if FLAGS.epoch_steps < 0 else min(FLAGS.epoch_steps,
                                                                      run.steps_per_epoch)
        start = time.perf_counter()
        state = run_epoch(state, 2, steps)
        epoch_rate = steps * config.batch_size / (time.perf_counter() - start)

        run.evaluate(state, run.test)  # compiles
        start = time.perf_counter()
        result = run.evaluate(state, run.test)
        eval_rate = result['count'] / (time.perf_counter() - start)
        run.checkpoints.close()
        run.writer.close()

    # XLA's cost analysis is of one device's program: its share of the batch.
    flops_per_image = train_step_flops(compiled) / (config.batch_size // jax.device_count())
    return {
        'model': config.model, 'batch_size': config.batch_size,
        'half_precision': bool(config.half_precision), 'dataset': config.dataset,
        'depthwise_implementation': config.model_args.get('depthwise_implementation', 'auto'),
        'steps_per_dispatch': config.get('steps_per_dispatch', 1),
        'backend': jax.default_backend(), 'devices': jax.device_count(),
        'device_kind': jax.devices()[0].device_kind, 'cpu_threads': len(os.sched_getaffinity(0)),
        'jax': jax.__version__, 'python': platform.python_version(),
        'startup_s': round(startup_s, 2), 'compile_s': round(compile_s, 2),
        'train_images_per_s': round(train_rate, 1), 'epoch_images_per_s': round(epoch_rate, 1),
        'epoch_steps': steps, 'eval_images_per_s': round(eval_rate, 1),
        'flops_per_image': round(flops_per_image), 'gflops_per_s': round(
            flops_per_image * train_rate / 1e9, 2),
        'epoch_vs_step': round(epoch_rate / train_rate, 3),
    }


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if FLAGS.compilation_cache:
        xla_options.use_compilation_cache()
    result = measure(FLAGS.config)
    if FLAGS.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f'{key:20s} {value}')


if __name__ == '__main__':
    flags.mark_flags_as_required(['config'])
    app.run(main)
