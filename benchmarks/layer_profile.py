"""Where a training step's time goes, layer by layer: forward and backward of each leaf layer.

  python benchmarks/layer_profile.py --config configs/seednet.py [--steps 5]

Runs the model once in train mode on a random batch of config.train.batch_size, records every leaf
layer's call (convs, BatchNorm, dropout, pooling, dense: the rows of the summary table) with
its input, then times each layer alone, jitted: its forward, and its forward plus the
backward pass to its parameters and its input (median of --steps calls after a warm-up).
Backward is the difference. Layers in one jitted step fuse and overlap, so the sum is a
guide to the shares, not the step's time (`step_breakdown.py` times the whole step).
"""
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from flax_cifar import allocator
from flax_cifar.models import summary
from flax_cifar.state import train_state  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration.', lock_config=True)
flags.DEFINE_integer('steps', 5, 'Timed calls per layer and pass.')


def leaf_calls(model: nn.Module, x: jax.Array) -> list[tuple[str, nn.Module, jax.Array]]:
    """(path, unbound copy, input) of each leaf layer, in call order, in train mode."""
    calls = []

    def record(next_fun, args, kwargs, context):
        if context.method_name == '__call__' and isinstance(context.module,
                                                           summary.LEAF_LAYERS):
            module = context.module
            calls.append(('/'.join(module.scope.path), module.clone(parent=None), args[0]))
        return next_fun(*args, **kwargs)

    variables = model.init(jax.random.key(0), x)
    with nn.intercept_methods(record):
        model.apply(variables, x, train=True, mutable=['batch_stats'],
                    rngs={'dropout': jax.random.key(1)})
    return calls


def median_ms(fn, *args) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def time_layer(layer: nn.Module, x: jax.Array) -> tuple[float, float]:
    """(forward ms, forward + backward ms) of one layer on input x."""
    variables = layer.init(jax.random.key(0), x)
    params = variables.get('params', {})
    rest = {k: v for k, v in variables.items() if k != 'params'}
    rngs = {'dropout': jax.random.key(1)}

    def forward(params, x):
        out, _ = layer.apply({'params': params, **rest}, x, mutable=list(rest), rngs=rngs)
        return out

    cotangent = jnp.ones_like(jax.eval_shape(forward, params, x), dtype=jnp.float32)
    loss = lambda params, x: jnp.sum(forward(params, x) * cotangent)
    return (median_ms(jax.jit(forward), params, x),
            median_ms(jax.jit(jax.grad(loss, argnums=(0, 1))), params, x))


def main(argv):
    del argv
    config = FLAGS.config
    model = train_state.model_of(config)
    x = jax.random.normal(jax.random.key(0), (config.train.batch_size, 32, 32, 3), jnp.float32)
    rows = []
    for path, layer, layer_input in leaf_calls(model, x):
        forward, both = time_layer(layer, layer_input)
        rows.append((path, type(layer).__name__, tuple(layer_input.shape[1:]), forward,
                     both - forward))
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'layer':<{width}}{'kind':<15}{'input':<16}{'forward ms':>11}{'backward ms':>12}")
    for path, kind, shape, forward, backward in rows:
        print(f'{path:<{width}}{kind:<15}{str(shape):<16}{forward:>11.1f}{backward:>12.1f}')
    forward, backward = sum(r[3] for r in rows), sum(r[4] for r in rows)
    print(f"{'sum':<{width + 31}}{forward:>11.1f}{backward:>12.1f}")
    by_kind = {}
    for _, kind, _, f, b in rows:
        by_kind[kind] = np.add(by_kind.get(kind, (0.0, 0.0)), (f, b))
    for kind, (f, b) in sorted(by_kind.items(), key=lambda item: -sum(item[1])):
        print(f'  {kind:<13} forward {f:7.1f} ms  backward {b:7.1f} ms  '
              f'({100 * (f + b) / (forward + backward):.0f}% of the sum)')


if __name__ == '__main__':
    allocator.reexec()  # as main.py trains: flax_cifar/allocator.py
    flags.mark_flags_as_required(['config'])
    app.run(main)
