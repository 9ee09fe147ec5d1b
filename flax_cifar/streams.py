"""A run's independent random streams, each folded with the step or epoch it serves, so that
every random choice is a function of (config.seed, step): a resumed run retraces the
uninterrupted one."""
import jax

# Never renumbered: a stream's number is part of every run's draws.
(INIT, EPOCH_ORDER, AUGMENT, DROPOUT, CUTOUT, FLIP, ROTATE, SHARPEN, COLOR, MIXUP,
 PRECISE_BN) = range(11)


def key(seed: int, stream: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), stream)
