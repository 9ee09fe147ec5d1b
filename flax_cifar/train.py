"""Training and evaluation: small pure functions and one driver, `train_and_evaluate`.

The data live on the device. Every random choice (init, epoch order, crops, flips, dropout)
is a function of (config.seed, step), so a resumed run retraces the uninterrupted one.
"""
import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax.training import train_state
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm import tqdm

from flax_cifar import input_pipeline, metric_writers, models

# Independent random streams, each folded with the step or epoch it serves.
INIT_STREAM, EPOCH_ORDER_STREAM, AUGMENT_STREAM, DROPOUT_STREAM = range(4)


class TrainState(train_state.TrainState):
    batch_stats: Any


def create_model(config: ml_collections.ConfigDict, num_classes: int = 10):
    return models.create_model(config.model, num_classes=num_classes, **config.model_args)


def create_learning_rate_fn(config: ml_collections.ConfigDict, total_steps: int,
                            steps_per_epoch: int) -> optax.Schedule:
    """The per-step learning rate; `config.learning_rate` is its peak."""
    if config.schedule == 'onecycle':
        return optax.cosine_onecycle_schedule(
            transition_steps=total_steps, peak_value=config.learning_rate,
            pct_start=config.warmup_fraction, div_factor=config.onecycle_div_factor,
            final_div_factor=config.onecycle_final_div_factor)
    if config.schedule == 'warmup_cosine':
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=config.learning_rate,
            warmup_steps=int(config.warmup_fraction * total_steps), decay_steps=total_steps)
    if config.schedule == 'constant':
        return optax.constant_schedule(config.learning_rate)
    raise ValueError(f'config.schedule={config.schedule!r} is not a schedule; '
                     "choose one of ['constant', 'onecycle', 'warmup_cosine']")


def create_optimizer(config: ml_collections.ConfigDict,
                     learning_rate_fn: optax.Schedule) -> optax.GradientTransformation:
    """SGD with momentum; weight decay on conv and dense kernels only, not BN or biases."""
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
        optax.sgd(learning_rate_fn, momentum=config.momentum, nesterov=config.nesterov))


def create_train_state(rng: jax.Array, model, tx: optax.GradientTransformation,
                       image_shape=input_pipeline.IMAGE_SHAPE) -> TrainState:
    variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx,
                             batch_stats=variables.get('batch_stats', {}))


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def train_step(state: TrainState, batch: dict, rng: jax.Array, label_smoothing: float = 0.0):
    """One SGD step on a normalized batch. Dropout's key is `rng` folded with the step."""
    dropout_rng = jax.random.fold_in(rng, state.step)

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
            rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
        loss = cross_entropy(logits, batch['label'], label_smoothing).mean()
        return loss, (logits, updates['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    metrics = {'loss': loss,
               'correct': jnp.sum(jnp.argmax(logits, -1) == batch['label']),
               'count': batch['label'].shape[0]}
    return state, metrics


def eval_step(state: TrainState, batch: dict):
    """Summed loss and correct count over the examples whose `mask` is true."""
    logits = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                            batch['image'], train=False)
    mask = batch['mask']
    loss = cross_entropy(logits, batch['label'])
    return {'loss_sum': jnp.sum(jnp.where(mask, loss, 0.0)),
            'correct': jnp.sum((jnp.argmax(logits, -1) == batch['label']) & mask),
            'count': jnp.sum(mask)}


def epoch_order(seed: int, epoch: int, num_examples: int) -> jax.Array:
    """The training-set permutation of one epoch: a function of (seed, epoch) alone."""
    rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), EPOCH_ORDER_STREAM), epoch)
    return jax.random.permutation(rng, num_examples)


def make_train_fn(config: ml_collections.ConfigDict, batch_sharding: NamedSharding):
    """Jitted: gather batch `index` of `order` from the device-resident split, augment, step."""
    base_rng = jax.random.key(config.seed)
    augment_rng = jax.random.fold_in(base_rng, AUGMENT_STREAM)
    dropout_rng = jax.random.fold_in(base_rng, DROPOUT_STREAM)

    @functools.partial(jax.jit, donate_argnums=0)
    def train_fn(state, images, labels, order, index):
        ids = jax.lax.dynamic_slice_in_dim(order, index * config.batch_size, config.batch_size)
        batch_images = images[ids]
        if config.augment:
            batch_images = input_pipeline.random_crop_flip(
                jax.random.fold_in(augment_rng, state.step), batch_images,
                config.crop_padding, config.flip)
        batch = {'image': input_pipeline.normalize(batch_images), 'label': labels[ids]}
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        return train_step(state, batch, dropout_rng, config.label_smoothing)

    return train_fn


@functools.partial(jax.jit, static_argnames='batch_size')
def _eval_batch(state, images, labels, index, batch_size):
    positions = index * batch_size + jnp.arange(batch_size)
    mask = positions < labels.shape[0]
    # The last partial batch repeats the final example instead of padding the split; the mask
    # keeps the repeats out of the sums.
    ids = jnp.minimum(positions, labels.shape[0] - 1)
    batch = {'image': input_pipeline.normalize(images[ids]), 'label': labels[ids], 'mask': mask}
    return eval_step(state, batch)


def evaluate(state: TrainState, images: jax.Array, labels: jax.Array, batch_size: int) -> dict:
    """Mean loss and accuracy over a whole device-resident split."""
    num_batches = -(-labels.shape[0] // batch_size)
    sums = [_eval_batch(state, images, labels, i, batch_size) for i in range(num_batches)]
    totals = jax.tree.map(lambda *x: float(np.sum(x)), *jax.device_get(sums))
    return {'loss': totals['loss_sum'] / totals['count'], 'correct': int(totals['correct']),
            'count': int(totals['count']), 'accuracy': totals['correct'] / totals['count']}


def create_checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=config.max_checkpoints_to_keep,
                                           create=True, enable_async_checkpointing=True)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                                 options=options)


def restore_latest(manager: ocp.CheckpointManager, state: TrainState) -> TrainState:
    """The latest checkpoint restored into `state`'s structure, or `state` when none exists."""
    step = manager.latest_step()
    if step is None:
        return state
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    logging.info('Resumed from checkpoint at step %d', step)
    return restored


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Train `config` in `workdir`, resuming from its latest checkpoint; returns the state."""
    is_chief = jax.process_index() == 0
    mesh = jax.make_mesh((jax.device_count(),), ('data',),
                         axis_types=(jax.sharding.AxisType.Auto,))
    replicated, batch_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    if config.batch_size % jax.device_count():
        raise ValueError(f'config.batch_size={config.batch_size} does not split over '
                         f'{jax.device_count()} devices')

    train = input_pipeline.load_split(config.dataset, 'train', config.data_dir)
    test = input_pipeline.load_split(config.dataset, 'test', config.data_dir)
    num_classes = input_pipeline.num_classes(config.dataset, config.data_dir)
    steps_per_epoch = len(train.labels) // config.batch_size
    total_steps = (config.num_train_steps if config.num_train_steps > 0
                   else config.num_epochs * steps_per_epoch)
    num_epochs = -(-total_steps // steps_per_epoch)

    model = create_model(config, num_classes)
    if is_chief:
        print(models.summarize(model))
    learning_rate_fn = create_learning_rate_fn(config, total_steps, steps_per_epoch)
    state = create_train_state(
        jax.random.fold_in(jax.random.key(config.seed), INIT_STREAM), model,
        create_optimizer(config, learning_rate_fn))
    manager = create_checkpoint_manager(workdir, config)
    state = jax.device_put(restore_latest(manager, state), replicated)
    train_images, train_labels, test_images, test_labels = jax.device_put(
        (train.images, train.labels, test.images, test.labels), replicated)

    writer = metric_writers.MetricWriter(workdir, enabled=is_chief)
    train_fn = make_train_fn(config, batch_sharding)
    step = int(state.step)
    if step >= total_steps and is_chief:
        print(f'Nothing to do: the checkpoint in {workdir} is at step {step} of {total_steps}.')
    for epoch in range(step // steps_per_epoch, num_epochs):
        order = epoch_order(config.seed, epoch, len(train.labels))
        first, last = step - epoch * steps_per_epoch, min(steps_per_epoch,
                                                          total_steps - epoch * steps_per_epoch)
        if is_chief:
            print(f'\nEPOCH: {epoch}')
        bar = tqdm(range(first, last), disable=not is_chief, initial=first, total=last)
        epoch_start, pending, sums = time.time(), [], {'loss': 0.0, 'correct': 0, 'count': 0}
        for index in bar:
            state, metrics = train_fn(state, train_images, train_labels, order, index)
            step += 1
            pending.append(metrics)
            if len(pending) == config.log_every_steps or index == last - 1:
                # Reading metrics back waits for these steps only; later ones are not queued yet.
                fetched = jax.device_get(pending)
                pending = []
                for m in fetched:
                    sums = {k: sums[k] + m[k] * (m['count'] if k == 'loss' else 1) for k in sums}
                loss = float(fetched[-1]['loss'])
                bar.set_description(f'Loss={loss} Batch_id={index} '
                                    f"Accuracy={100 * sums['correct'] / sums['count']:.2f}")
                writer.write_scalars(step, {'train/loss': loss,
                                            'train/learning_rate': learning_rate_fn(step - 1)})
            if config.checkpoint_every_steps > 0 and step % config.checkpoint_every_steps == 0:
                manager.save(step, args=ocp.args.StandardSave(state))
        bar.close()
        epoch_time = time.time() - epoch_start
        test_metrics = evaluate(state, test_images, test_labels, config.eval_batch_size)
        if is_chief:
            print(f"\nTest set: Average loss: {test_metrics['loss']:.4f}, Accuracy: "
                  f"{test_metrics['correct']}/{test_metrics['count']} "
                  f"({100 * test_metrics['accuracy']:.2f}%)")
        record = {'epoch': epoch, 'step': step, 'epoch_time_s': epoch_time,
                  'learning_rate': float(learning_rate_fn(step - 1)),
                  'test_loss': test_metrics['loss'], 'test_accuracy': test_metrics['accuracy']}
        if sums['count']:
            record.update(train_loss=sums['loss'] / sums['count'],
                          train_accuracy=sums['correct'] / sums['count'])
        writer.write_epoch(record)
        if manager.latest_step() != step:
            manager.save(step, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    manager.close()
    writer.close()
    return state
