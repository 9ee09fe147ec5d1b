"""Throughput of any config on this machine: the jitted step, a real epoch, evaluation, compile.

  python benchmarks/throughput.py --config configs/seednet.py \
      --config.data.dataset=folder:/path/to/cifar10 [--config.train.batch_size=128] [--json]

Measures, through the same functions `main.py` trains with:
  startup_s           from this command's start to the end of the first training step:
                      imports, data loading (decoded-folder cache included), compile
  compile_s           XLA compilation of the train step (a load from disk once the persistent
                      compilation cache holds it, as main.py uses it)
  train_images_per_s  the jitted step alone, on the device-resident training split
  epoch_images_per_s  the second epoch of `train_and_evaluate` itself (epoch order, host
                      bookkeeping, progress and metrics, config.train.steps_per_dispatch steps per
                      call) over the config's dataset, from its metrics.jsonl
  eval_images_per_s   the whole test split through the evaluation step
  flops_per_image     XLA's cost analysis of the train step (forward, backward, update) / batch
  gflops_per_s        flops_per_image x train_images_per_s
One row per measurement; with --json, one JSON object with these keys and the setting.
"""
import time

START = time.time()  # before the heavy imports: they are part of the time to the first step

import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from flax_cifar import allocator, validation, xla_options
from flax_cifar.data import host_data
from flax_cifar.evaluation import evaluate, views
from flax_cifar.models import kernels
from flax_cifar.parallel import data_parallel
from flax_cifar.state import optim, train_state
from flax_cifar.training import plan as plan_lib
from flax_cifar.training import step as step_lib
from flax_cifar.training import train
from flax_cifar.workdir import metric_writers

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration.', lock_config=True)
flags.DEFINE_integer('steps', 20, 'Timed steps per repeat of the pure-step measurement.')
flags.DEFINE_integer('repeats', 3, 'Repeats of the pure-step measurement (median reported).')
flags.DEFINE_integer('epoch_steps', -1, 'Steps of the real epoch (-1: a whole epoch).')
flags.DEFINE_bool('compilation_cache', True, 'Use the persistent compilation cache, as main.py '
                  'does (--nocompilation_cache: a cold start).')
flags.DEFINE_bool('json', False, 'Print one JSON object instead of rows.')
flags.DEFINE_enum('depthwise_implementation', None, list(kernels.IMPLEMENTATIONS),
                  'How true depthwise convs compute (default: the model\'s, "auto": by backend).')


def train_step_flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # one entry per program in older JAX versions
        analysis = analysis[0]
    return float(analysis['flops'])


def time_steps(train_fn, state, data, order, steps_per_epoch: int, batch_size: int):
    """Median images/s over FLAGS.repeats windows of FLAGS.steps steps (after a warm-up)."""
    index, rates = 1, []
    for _ in range(FLAGS.repeats + 1):  # the first window warms caches and is dropped
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            state, metrics = train_fn(state, data.train_images, data.train_labels, order,
                                      index % steps_per_epoch)
            index += 1
        jax.block_until_ready(metrics)
        rates.append(FLAGS.steps * batch_size / (time.perf_counter() - start))
    return state, statistics.median(rates[1:])


def real_epoch_rate(config, steps_per_epoch: int) -> tuple[float, int]:
    """(images/s, steps) of the second epoch of `train_and_evaluate` itself (the first pays
    the compiles), from its metrics.jsonl: epoch order, progress, metrics, dispatch."""
    steps = steps_per_epoch if FLAGS.epoch_steps < 0 else min(FLAGS.epoch_steps,
                                                              steps_per_epoch)
    with tempfile.TemporaryDirectory() as workdir:
        quiet = config.copy_and_resolve_references()
        quiet.train.steps = steps_per_epoch + steps
        quiet.train.epochs = 2
        with open(os.devnull, 'w') as devnull, contextlib.redirect_stdout(devnull), \
                contextlib.redirect_stderr(devnull):
            train.train_and_evaluate(quiet, workdir)
        second = metric_writers.read_records(os.path.join(workdir, 'metrics.jsonl'))[1]
    return steps * config.train.batch_size / second['epoch_time_s'], steps


def measure(config) -> dict:
    config = config.copy_and_resolve_references()
    if FLAGS.depthwise_implementation:
        with config.unlocked():
            config.model_args.depthwise_implementation = FLAGS.depthwise_implementation
    config.checkpoint.every_steps = -1
    validation.validate_config(config)
    mesh = data_parallel.create_mesh()
    data = host_data.load_host_data(config, mesh)
    plan = plan_lib.plan_steps(config, data.num_train, data.shards)
    model = train_state.model_of(config, len(data.class_names))
    learning_rate_fn = optim.create_learning_rate_fn(config.optim, plan.schedule_steps)
    state = train_state.create_train_state(
        jax.random.key(config.seed), model, optim.create_optimizer(config, learning_rate_fn),
        ema=train_state.keeps_average(config.average))
    train_fn = step_lib.make_train_fn(config, mesh, plan.steps_per_epoch, plan.schedule_steps)
    order = data_parallel.by_host(mesh, data_parallel.host_block(
        host_data.epoch_order(config.seed, 0, data.num_train, data.shards)))

    start = time.perf_counter()
    compiled = train_fn.lower(state, data.train_images, data.train_labels, order, 0).compile()
    compile_s = time.perf_counter() - start
    state, metrics = train_fn(state, data.train_images, data.train_labels, order, 0)
    jax.block_until_ready(metrics)
    startup_s = time.time() - START
    state, train_rate = time_steps(train_fn, state, data, order, plan.steps_per_epoch,
                                   config.train.batch_size)

    test = evaluate.make_evaluate(mesh, config.eval.batch_size, *views.test_time_views(config.eval),
                                  normalization=config.data.normalize)
    test(state, data.test)  # compiles
    start = time.perf_counter()
    result = test(state, data.test)
    eval_rate = result['count'] / (time.perf_counter() - start)
    epoch_rate, steps = real_epoch_rate(config, plan.steps_per_epoch)

    # XLA's cost analysis is of one device's program: its share of the batch.
    flops_per_image = train_step_flops(compiled) / (config.train.batch_size // jax.device_count())
    return {
        'model': config.model, 'batch_size': config.train.batch_size,
        'half_precision': bool(config.half_precision), 'dataset': config.data.dataset,
        'depthwise_implementation': config.model_args.get('depthwise_implementation', 'auto'),
        'steps_per_dispatch': config.train.steps_per_dispatch,
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
    allocator.reexec()  # as main.py trains: flax_cifar/allocator.py
    flags.mark_flags_as_required(['config'])
    app.run(main)
