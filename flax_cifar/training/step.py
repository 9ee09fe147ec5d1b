"""The jitted training step: gather a global batch where its rows live, augment and
normalize it (data.augment), one optimizer step, the weight average's update.

Every random choice is a function of (config.seed, step) (streams.py), so a resumed run
retraces the uninterrupted one.
"""
import functools

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from flax_cifar import streams, xla_options
from flax_cifar.data import augment
from flax_cifar.parallel import data_parallel
from flax_cifar.training import averaging, optim
from flax_cifar.training.averaging import Lookahead
from flax_cifar.training.train_state import TrainState


def batch_loss(logits, batch: dict, label_smoothing: float) -> jax.Array:
    """Mean smoothed cross-entropy; with mixup, each image's two labels by its weight."""
    loss = optim.cross_entropy(logits, batch['label'], label_smoothing)
    if 'mix_weight' in batch:
        mixed = optim.cross_entropy(logits, batch['mix_label'], label_smoothing)
        loss = (1 - batch['mix_weight']) * loss + batch['mix_weight'] * mixed
    return loss.mean()


def train_step(state: TrainState, batch: dict, rng: jax.Array, label_smoothing: float = 0.0,
               ema_decay: float = 0.0, lookahead: Lookahead | None = None,
               ema_warmup: bool = True):
    """One optimizer step on a normalized batch. Dropout's key is `rng` folded with the step.

    When the state keeps a moving average (state.ema), it moves towards the new weights
    (held back early on with ema_warmup), or with `lookahead`, it is Lookahead's slow copy.
    """
    dropout_rng = jax.random.fold_in(rng, state.step)

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
            rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
        return batch_loss(logits, batch, label_smoothing), (logits, updates['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    state = averaging.update_average(state, ema_decay, lookahead, ema_warmup)
    metrics = {'loss': loss,
               'correct': jnp.sum(jnp.argmax(logits, -1) == batch['label']),
               'count': batch['label'].shape[0]}
    return state, metrics


def make_batch_fns(config: ml_collections.ConfigDict, mesh: Mesh, steps_per_epoch: int = 1,
                   total_steps: int = 1):
    """(gather, step): gather(images, labels, orders, index) takes batch `index` from each
    host's shards; step(state, images, labels) augments, normalizes and trains on it.

    steps_per_epoch, total_steps: the run's plan, for epoch-wise ops and Lookahead.
    """
    lookahead = averaging.lookahead_of(config, steps_per_epoch, total_steps)
    dropout_rng = streams.key(config.seed, streams.DROPOUT)

    def gather(images, labels, orders, index):
        ids = data_parallel.shard_batch_ids(orders, index, config.batch_size // len(orders),
                                            mesh.shape[data_parallel.HOSTS])
        return data_parallel.take_rows(mesh, (images, labels), ids)

    def step(state, batch_images, batch_labels):
        batch = augment.train_batch(config, batch_images, batch_labels, state.step,
                                    steps_per_epoch)
        return train_step(state, data_parallel.split_over_devices(mesh, batch), dropout_rng,
                          config.label_smoothing, config.ema_decay, lookahead, config.ema_warmup)

    return gather, step


def make_train_fn(config: ml_collections.ConfigDict, mesh: Mesh, *plan: int):
    """Jitted: gather batch `index` from each host's shards, augment, normalize, step.

    plan: (steps per epoch, total steps), as make_batch_fns takes them."""
    gather, step = make_batch_fns(config, mesh, *plan)

    @functools.partial(jax.jit, donate_argnums=0,
                       compiler_options=xla_options.training_options(config))
    def train_fn(state, images, labels, orders, index):
        return step(state, *gather(images, labels, orders, index))

    return train_fn


def make_multi_step_fn(config: ml_collections.ConfigDict, mesh: Mesh, steps_per_dispatch: int,
                       *plan: int):
    """Jitted: batches `index` .. `index + steps_per_dispatch - 1` in one call, metrics
    stacked.

    One dispatch instead of `steps_per_dispatch` round trips through Python, where the host's
    per-step cost rivals a short step (fast GPUs and TPUs). The steps are unrolled, not a
    lax.scan, which XLA's CPU backend ran at half speed (docs/speed.md). Each step computes
    what `make_train_fn`'s does, with the same keys; XLA fuses the program as a whole, so
    results agree with single steps up to float rounding.
    """
    gather, step = make_batch_fns(config, mesh, *plan)

    @functools.partial(jax.jit, donate_argnums=0,
                       compiler_options=xla_options.training_options(config))
    def multi_step_fn(state, images, labels, orders, index):
        metrics = []
        for offset in range(steps_per_dispatch):
            state, step_metrics = step(state, *gather(images, labels, orders, index + offset))
            metrics.append(step_metrics)
        return state, jax.tree.map(lambda *m: jnp.stack(m), *metrics)

    return multi_step_fn
