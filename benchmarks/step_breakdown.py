"""Where a training step's time goes: forward (eval and train mode), gradient, whole step.

  python benchmarks/step_breakdown.py --config configs/seednet.py \
      [--config.model_args.dropout_rate=0]

Times each piece, jitted, on a random batch of config.train.batch_size (mean of --steps calls after
one warm-up call), so that e.g. dropout's or BatchNorm's share shows as a difference.
"""
import functools
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
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
flags.DEFINE_integer('steps', 8, 'Timed calls per piece.')


def milliseconds(fn, *args) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        result = fn(*args)
    jax.block_until_ready(result)
    return (time.perf_counter() - start) / FLAGS.steps * 1000


def random_setup(config):
    """(model, its fresh train state, a random batch of config.train.batch_size images)."""
    model = train_state.model_of(config)
    state = train_state.create_train_state(jax.random.key(0), model, optim.create_optimizer(
        config, optim.create_learning_rate_fn(config.optim, 1000)))
    rng = np.random.default_rng(0)
    size = config.train.batch_size
    batch = {'image': jnp.asarray(rng.normal(size=(size, 32, 32, 3)), jnp.float32),
             'label': jnp.asarray(rng.integers(0, 10, size), jnp.int32)}
    return model, state, batch


def main(argv):
    del argv
    config = FLAGS.config
    model, state, batch = random_setup(config)
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    dropout = {'dropout': jax.random.key(1)}

    def forward_train(params, images):
        return model.apply({**variables, 'params': params}, images, train=True, rngs=dropout,
                           mutable=['batch_stats'])[0]

    def loss(params, images):
        return optim.cross_entropy(forward_train(params, images), batch['label']).mean()

    jit = functools.partial(jax.jit, compiler_options=xla_options.training_options(config.train))
    pieces = {
        'forward, eval mode': (jit(lambda v, x: model.apply(v, x, train=False)),
                               variables, batch['image']),
        'forward, train mode': (jit(forward_train), state.params, batch['image']),
        'gradient': (jit(jax.grad(loss)), state.params, batch['image']),
        'whole train step': (jit(lambda s: step_lib.train_step(s, batch, jax.random.key(1),
                                                            config.train.label_smoothing)), state),
    }
    print(f'{config.model} {dict(config.model_args)} batch {config.train.batch_size}, '
          f'jax {jax.__version__}, {jax.devices()[0].device_kind}')
    for name, (fn, *args) in pieces.items():
        print(f'{name:22s} {milliseconds(fn, *args):8.1f} ms')


if __name__ == '__main__':
    allocator.reexec()  # as main.py trains: flax_cifar/allocator.py
    flags.mark_flags_as_required(['config'])
    app.run(main)
