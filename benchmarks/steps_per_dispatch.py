"""Steps per dispatch: N jitted single steps against one program of N steps.

  python benchmarks/steps_per_dispatch.py --config configs/seednet.py --steps_per_dispatch 8 \
      [--scan]

Both run `step.train_step` on the same random batches (batch config.train.batch_size), alternated
--alternations times, each timing two calls of N steps after a warm-up; prints ms per step.
The N steps are unrolled in one program, as `step.make_train_fn(..., steps=N)` builds them, or with
--scan a lax.scan over them (XLA's CPU backend ran that loop's body at half speed).
"""
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from flax_cifar import allocator, xla_options
from flax_cifar.state import optim, train_state
from flax_cifar.training import step as step_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration.', lock_config=True)
flags.DEFINE_integer('steps_per_dispatch', 8, 'Steps in the multi-step program.')
flags.DEFINE_integer('alternations', 3, 'Times the two ways are timed, alternately.')
flags.DEFINE_bool('scan', False, 'A lax.scan over the steps instead of unrolling them.')


def main(argv):
    del argv
    config, n = FLAGS.config, FLAGS.steps_per_dispatch
    model = train_state.model_of(config)
    tx = optim.create_optimizer(config, optim.create_learning_rate_fn(config.optim, 1000))
    state = train_state.create_train_state(jax.random.key(0), model, tx)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(n, config.train.batch_size, 32, 32, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, (n, config.train.batch_size)), jnp.int32)

    def step(state, batch):
        return step_lib.train_step(state, {'image': batch[0], 'label': batch[1]},
                                jax.random.key(1), config.train.label_smoothing)

    options = xla_options.training_options(config.train)
    one = jax.jit(step, donate_argnums=0, compiler_options=options)

    @functools.partial(jax.jit, compiler_options=options)
    def multi_step(state, images, labels):
        if FLAGS.scan:
            return jax.lax.scan(step, state, (images, labels))
        metrics = []
        for i in range(n):
            state, m = step(state, (images[i], labels[i]))
            metrics.append(m)
        return state, metrics

    def one_at_a_time(state):
        for i in range(n):
            state, metrics = one(state, (images[i], labels[i]))
        return state, metrics

    ways = {'one step per call': one_at_a_time,
            f'{n} steps per call' + (' (scan)' if FLAGS.scan else ''):
                lambda state: multi_step(state, images, labels)}
    for _ in range(FLAGS.alternations):
        for name, run in ways.items():
            state, metrics = run(state)  # warm-up (compiles the first time)
            jax.block_until_ready(metrics)
            start = time.perf_counter()
            for _ in range(2):
                state, metrics = run(state)
            jax.block_until_ready(metrics)
            print(f'{name:24s} {(time.perf_counter() - start) / (2 * n) * 1000:.1f} ms/step',
                  flush=True)


if __name__ == '__main__':
    allocator.reexec()  # as main.py trains: flax_cifar/allocator.py
    flags.mark_flags_as_required(['config'])
    app.run(main)
