"""A tiling max pool with the outputs and gradients of `jnp.max` over each tile, which keeps
which inputs were the maxima instead of the input: faster to train on CPU (docs/speed.md).
"""
import functools

import jax
import jax.numpy as jnp


def _pool_taps(x, window: int) -> list:
    """Tap (a, b) of every non-overlapping window x window tile of x, one strided slice per
    tap; a ragged edge is left out. Slices, not a reshape: reshaping a cropped array copies it
    first (4x the forward's time at 31x31)."""
    n, h, w, c = x.shape
    rows, cols = h // window, w // window
    return [jax.lax.slice(x, (0, a, b, 0), (n, a + (rows - 1) * window + 1,
                                            b + (cols - 1) * window + 1, c),
                          (1, window, window, 1))
            for a in range(window) for b in range(window)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool_tiles(x, window: int):
    """Max over the non-overlapping window x window tiles of x; a ragged edge is dropped.

    Autodiff keeps x for the backward pass and recomputes which taps were the maxima from
    it, in several full-size passes; this keeps one byte (or two) per output, the taps that
    equal the maximum as bits, and routes the gradient to them in one pass, split among
    ties as `jnp.max`'s gradient splits it (docs/speed.md).
    """
    return functools.reduce(jnp.maximum, _pool_taps(x, window))


def _max_pool_tiles_fwd(x, window):
    taps = _pool_taps(x, window)
    y = functools.reduce(jnp.maximum, taps)
    bits = jnp.uint8 if len(taps) <= 8 else jnp.uint16 if len(taps) <= 16 else jnp.uint32
    maxima = sum((tap == y).astype(bits) << k for k, tap in enumerate(taps))
    return y, (maxima, x.shape)


def _max_pool_tiles_bwd(window, residuals, grad):
    """Each tap's share of the gradient, spread back to its input positions by interior
    padding (zeros between, the ragged edge after): XLA fuses the sum into one loop."""
    maxima, (_, h, w, _) = residuals
    share = grad / jax.lax.population_count(maxima).astype(grad.dtype)
    rows, cols = grad.shape[1:3]
    zero = jnp.zeros((), grad.dtype)
    spread = []
    for k in range(window * window):
        a, b = divmod(k, window)
        tap = jnp.where((maxima >> k) & 1 == 1, share, zero)
        spread.append(jax.lax.pad(tap, zero, (
            (0, 0, 0), (a, h - a - (rows - 1) * window - 1, window - 1),
            (b, w - b - (cols - 1) * window - 1, window - 1), (0, 0, 0))))
    return (sum(spread),)


max_pool_tiles.defvjp(_max_pool_tiles_fwd, _max_pool_tiles_bwd)
