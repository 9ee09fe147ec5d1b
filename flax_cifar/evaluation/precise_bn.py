"""PreciseBN (Wu and Johnson, "Rethinking 'Batch' in BatchNorm", arXiv 2105.07576): the
BatchNorm statistics of fixed weights, recomputed over training images.

During training each BatchNorm keeps a running average of its batches' statistics (momentum
0.6 in the default: mostly the last few batches), and Lookahead averages those along with the
weights, so the statistics evaluated belong to no single set of weights. These are the
evaluated weights' own: every BatchNorm's input mean and variance over `num_batches` batches
of un-augmented training images, run in train mode (each layer normalized by its batch's
statistics, as in training), pooled over all the images.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flax_cifar import streams
from flax_cifar.data import types
from flax_cifar.state.train_state import TrainState, average_of, inference_variables


def _batch_norm_moments(model: nn.Module, variables: dict, images: jax.Array) -> dict:
    """{module path: (mean, mean of squares)} of each BatchNorm's input over `images`."""
    moments = {}

    def record(call, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm) and context.method_name == '__call__':
            x = args[0].astype(jnp.float32)
            axes = tuple(range(x.ndim - 1))
            if context.module.path in moments:
                raise ValueError(f'BatchNorm {context.module.path} is called twice a pass')
            moments[context.module.path] = (x.mean(axes), jnp.square(x).mean(axes))
        return call(*args, **kwargs)

    with nn.intercept_methods(record):
        model.apply(variables, images, train=True, mutable=['batch_stats'],
                    rngs={'dropout': jax.random.key(0)})
    return moments


def precise_batch_stats(model: nn.Module, variables: dict, images: np.ndarray,
                        num_batches: int, batch_size: int, key: jax.Array,
                        normalization: str = 'mean_std') -> dict:
    """`variables['batch_stats']` recomputed for `variables['params']` over `num_batches`
    batches of `batch_size` uint8 images drawn without replacement by `key` (at most all of
    them): the population mean and (biased) variance of each BatchNorm's input."""
    count = min(num_batches, len(images) // batch_size)
    if count < 1:
        raise ValueError(f'PreciseBN needs at least one batch of {batch_size} images; '
                         f'{len(images)} given')
    rows = np.asarray(jax.random.permutation(key, len(images)))[:count * batch_size]
    moments_of = jax.jit(lambda variables, batch: _batch_norm_moments(
        model, variables, types.normalize(batch, normalization)))
    sums = None
    for batch_rows in np.sort(rows.reshape(count, batch_size), axis=1):
        moments = moments_of(variables, jnp.asarray(images[batch_rows]))
        sums = moments if sums is None else jax.tree.map(jnp.add, sums, moments)
    stats = {}
    for path, (mean_sum, square_sum) in sums.items():
        mean, mean_square = mean_sum / count, square_sum / count
        node = stats
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = {'mean': mean, 'var': jnp.maximum(mean_square - jnp.square(mean), 0)}
    expected = jax.tree.structure(variables['batch_stats'])
    if jax.tree.structure(stats) != expected:
        raise ValueError(f'PreciseBN found BatchNorms {sorted(sums)}, the variables hold '
                         f'{expected}')
    return stats


def with_precise_stats(state: TrainState, model: nn.Module, images: np.ndarray,
                       num_batches: int, batch_size: int, seed: int,
                       normalization: str = 'mean_std') -> TrainState:
    """The state with the evaluated weights' BatchNorm statistics (their average's, where it
    keeps one) recomputed by `precise_batch_stats` over training `images`."""
    variables = inference_variables(state)
    stats = precise_batch_stats(model, variables, images, num_batches, batch_size,
                                streams.key(seed, streams.PRECISE_BN), normalization)
    if average_of(state) is not None:
        return state.replace(ema={**state.ema, 'batch_stats': stats})
    return state.replace(batch_stats=stats)
