"""The jitted training step: gather a global batch where its rows live, augment and
normalize it (data.augment), one optimizer step, the weight average's update.

Every random choice is a function of (config.seed, step) (streams.py), so a resumed run
retraces the uninterrupted one.
"""
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from flax_cifar import streams, xla_options
from flax_cifar.data import augment
from flax_cifar.parallel import data_parallel
from flax_cifar.state import optim
from flax_cifar.state.train_state import TrainState
from flax_cifar.training import averaging
from flax_cifar.training.averaging import Averaging


def batch_loss(logits, batch: dict, label_smoothing: float) -> jax.Array:
    """Mean smoothed cross-entropy; with mixup, each image's two labels by its weight."""
    loss = optim.cross_entropy(logits, batch['label'], label_smoothing)
    if 'mix_weight' in batch:
        mixed = optim.cross_entropy(logits, batch['mix_label'], label_smoothing)
        loss = (1 - batch['mix_weight']) * loss + batch['mix_weight'] * mixed
    return loss.mean()


def train_step(state: TrainState, batch: dict, dropout_rng: jax.Array,
               label_smoothing: float = 0.0, average: Averaging = Averaging()):
    """One optimizer step on a normalized batch, then the weight average's update (average).
    Dropout's key is `dropout_rng` folded with the step."""
    step_rng = jax.random.fold_in(dropout_rng, state.step)

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
            rngs={'dropout': step_rng}, mutable=['batch_stats'])
        return batch_loss(logits, batch, label_smoothing), (logits, updates['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    state = averaging.update_average(state, average)
    metrics = {'loss': loss,
               'correct': jnp.sum(jnp.argmax(logits, -1) == batch['label']),
               'count': batch['label'].shape[0]}
    return state, metrics


def make_train_fn(config: ml_collections.ConfigDict, mesh: Mesh, steps_per_epoch: int,
                  schedule_steps: int, steps: int = 1):
    """The run's jitted program, the state donated: batches `index` .. `index + steps - 1`,
    each gathered from the hosts' shards, augmented and normalized (data.augment) and trained
    on by `train_step`. steps_per_epoch paces the epoch-wise ops, schedule_steps Lookahead.

    steps > 1 (config.train.steps_per_dispatch): one dispatch instead of `steps` round trips
    through Python, where the host's per-step cost rivals a short step (fast GPUs and TPUs),
    metrics stacked. Unrolled, not a lax.scan, which XLA's CPU backend ran at half speed
    (docs/speed.md); the same keys, so results agree with single steps up to float rounding.
    """
    average = averaging.averaging_of(config.average, steps_per_epoch, schedule_steps)
    dropout_rng = streams.key(config.seed, streams.DROPOUT)

    def gather_and_step(state, images, labels, orders, index):
        ids = data_parallel.shard_batch_ids(orders, index, config.train.batch_size // len(orders),
                                            mesh.shape[data_parallel.HOSTS])
        batch = augment.train_batch(config, *data_parallel.take_rows(mesh, (images, labels), ids),
                                    state.step, steps_per_epoch)
        return train_step(state, data_parallel.split_over_devices(mesh, batch), dropout_rng,
                          config.train.label_smoothing, average)

    def train_fn(state, images, labels, orders, index):
        if steps == 1:
            return gather_and_step(state, images, labels, orders, index)
        metrics = []
        for offset in range(steps):
            state, step_metrics = gather_and_step(state, images, labels, orders, index + offset)
            metrics.append(step_metrics)
        return state, jax.tree.map(lambda *m: jnp.stack(m), *metrics)

    train_fn.__name__ = f'train_steps_{steps}'  # the program's name in profiles and logs
    return jax.jit(train_fn, donate_argnums=0,
                   compiler_options=xla_options.training_options(config.train))
