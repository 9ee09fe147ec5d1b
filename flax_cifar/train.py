"""Training and evaluation: small pure functions and one driver, `train_and_evaluate`.

The data live on the device. Every random choice (init, epoch order, crops, flips, dropout)
is a function of (config.seed, step), so a resumed run retraces the uninterrupted one.
"""
import contextlib
import dataclasses
import functools
import os
import signal
import threading
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from flax_cifar import (checkpointing, data_parallel, input_pipeline, metric_writers, models,
                        optim, plots, validation, whitening, workdir_lock, xla_options)

# Independent random streams, each folded with the step or epoch it serves.
(INIT_STREAM, EPOCH_ORDER_STREAM, AUGMENT_STREAM, DROPOUT_STREAM, CUTOUT_STREAM,
 FLIP_STREAM) = range(6)


class TrainState(train_state.TrainState):
    batch_stats: Any


class EmaTrainState(TrainState):
    """With a moving average of {'params', 'batch_stats'}: the weights that get evaluated.

    A class of its own, not an optional field, so that runs without the average save and
    restore exactly the checkpoints they always did.
    """
    ema: Any


def ema_of(state: TrainState):
    return state.ema if isinstance(state, EmaTrainState) else None


def use_compilation_cache():
    """Keeps XLA's programs on disk ($JAX_COMPILATION_CACHE_DIR, else <cache dir>/jax), so a
    restart skips compiling: on one CPU core that is ~30 s of the start, half of it the
    random initializers (the threefry hash compiles slowly on CPU)."""
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update('jax_compilation_cache_dir',
                          os.path.join(input_pipeline.default_cache_dir(), 'jax'))


def create_model(config: ml_collections.ConfigDict, num_classes: int = 10):
    dtype = jnp.bfloat16 if config.get('half_precision') else jnp.float32
    return models.create_model(config.model, num_classes=num_classes, dtype=dtype,
                               **config.model_args)


def frozen_layers(config: ml_collections.ConfigDict, model) -> tuple[str, ...]:
    """Layers whose parameters never train: the whitened first conv (config.stem_whitening)."""
    return (model.first_conv,) if config.get('stem_whitening') else ()


def create_optimizer(config: ml_collections.ConfigDict, model,
                     learning_rate_fn: optax.Schedule) -> optax.GradientTransformation:
    return optim.create_optimizer(config, learning_rate_fn, frozen_layers(config, model))


def test_time_views(config: ml_collections.ConfigDict) -> tuple[bool, int]:
    """(flip, translate) of predict_logits, as the config asks for them."""
    return bool(config.get('eval_flip', False)), int(config.get('eval_translate', 0))


def create_train_state(rng: jax.Array, model, tx: optax.GradientTransformation,
                       image_shape=input_pipeline.IMAGE_SHAPE, ema: bool = False) -> TrainState:
    # One jitted program: run op by op, the parameter and optimizer-state initializers
    # compile dozens of tiny programs one at a time (same values, seconds more at start).
    @jax.jit
    def create(rng):
        variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
        variables = {'params': variables['params'],
                     'batch_stats': variables.get('batch_stats', {})}
        if ema:
            return EmaTrainState.create(apply_fn=model.apply, tx=tx, **variables, ema=variables)
        return TrainState.create(apply_fn=model.apply, tx=tx, **variables)
    return create(rng)


def whiten_first_conv(state: TrainState, layer: str, train_images: jax.Array) -> TrainState:
    """The state with `layer`'s kernel whitened (config.stem_whitening), its average too."""
    kernel = whitening.kernel_like(state.params[layer]['kernel'], train_images)
    state = state.replace(params=whitening.with_kernel(state.params, layer, kernel))
    if ema_of(state) is not None:  # a buffer of its own: the step donates both
        state = state.replace(ema={**state.ema, 'params': whitening.with_kernel(
            state.ema['params'], layer, jnp.copy(kernel))})
    return state


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
    """`decay`, held below (1 + step) / (10 + step): early on the average follows the weights
    instead of remembering their random initial values for thousands of steps."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


class Lookahead(NamedTuple):
    """airbench's Lookahead (config.lookahead): every `every` steps from `start_step` on, the
    slow copy (state.ema) moves towards the weights by 1 - rho and the weights jump back to
    it, rho = decay ** every * (step / total_steps) ** power: free early, averaging strongly
    at the end. At each epoch's end the weights take the slow copy (rho = 1)."""
    every: int
    decay: float
    power: float
    start_step: int
    steps_per_epoch: int
    total_steps: int


def lookahead_sync(state: TrainState, lookahead: Lookahead) -> TrainState:
    """The state after `Lookahead`'s move at `state.step`; before start_step the slow copy
    follows the weights."""
    step = state.step
    early = step < lookahead.start_step
    sync = step % lookahead.every == 0
    moves = early | sync | (step % lookahead.steps_per_epoch == 0)
    rho = jnp.where(early, 0.0, jnp.where(
        sync, lookahead.decay ** lookahead.every * (step / lookahead.total_steps)
        ** lookahead.power, 1.0))
    weights = raw_variables(state)
    slow = jax.tree.map(lambda s, w: jnp.where(moves, w + rho * (s - w), s), state.ema, weights)
    weights = jax.tree.map(lambda s, w: jnp.where(moves & ~early, s, w), slow, weights)
    return state.replace(ema=slow, **weights)


def train_step(state: TrainState, batch: dict, rng: jax.Array, label_smoothing: float = 0.0,
               ema_decay: float = 0.0, lookahead: Lookahead | None = None):
    """One SGD step on a normalized batch. Dropout's key is `rng` folded with the step.

    When the state keeps a moving average (state.ema), it moves towards the new weights, or
    with `lookahead`, it is Lookahead's slow copy.
    """
    dropout_rng = jax.random.fold_in(rng, state.step)

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
            rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
        loss = cross_entropy(logits, batch['label'], label_smoothing).mean()
        return loss, (logits, updates['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if lookahead is not None:
        state = lookahead_sync(state, lookahead)
    elif ema_of(state) is not None:
        state = state.replace(ema=optax.incremental_update(
            raw_variables(state), state.ema, 1.0 - ema_decay_at(state.step, ema_decay)))
    metrics = {'loss': loss,
               'correct': jnp.sum(jnp.argmax(logits, -1) == batch['label']),
               'count': batch['label'].shape[0]}
    return state, metrics


def raw_variables(state: TrainState) -> dict:
    return {'params': state.params, 'batch_stats': state.batch_stats}


def view_images(images: jax.Array, shift: int, mirrored: bool) -> jax.Array:
    """One test-time view: images shifted `shift` pixels down-right (up-left if negative;
    borders reflected), then mirrored left to right if `mirrored`."""
    if shift:
        t = abs(shift)
        height, width = images.shape[1:3]
        padded = jnp.pad(images, ((0, 0), (t, t), (t, t), (0, 0)), mode='reflect')
        images = padded[:, :height, :width] if shift > 0 else padded[:, 2 * t:, 2 * t:]
    return images[:, :, ::-1] if mirrored else images


def average_views(logits_of, flip: bool, translate: int):
    """The test-time average of `logits_of(shift, mirrored)`, each view's logits: with flip,
    each image and its mirror image count alike; with translate=t, half of the weight goes
    to the views shifted t pixels down-right and up-left (airbench's multi-crop)."""
    def over_flips(shift):
        logits = logits_of(shift, False)
        return (logits + logits_of(shift, True)) / 2 if flip else logits

    logits = over_flips(0)
    if translate:
        logits = logits / 2 + (over_flips(translate) + over_flips(-translate)) / 4
    return logits


def inference_variables(state: TrainState, ema: bool = True) -> dict:
    """The moving average of the weights where the state has one (unless ema=False), else
    the weights themselves."""
    averaged = ema_of(state) if ema else None
    return raw_variables(state) if averaged is None else averaged


def predict_logits(state: TrainState, images: jax.Array, flip: bool = False,
                   ema: bool = True, translate: int = 0) -> jax.Array:
    """Logits of normalized images, averaged over the test-time views (average_views)."""
    variables = inference_variables(state, ema)
    return average_views(
        lambda shift, mirrored: state.apply_fn(
            variables, view_images(images, shift, mirrored), train=False),
        flip, translate)


def eval_step(state: TrainState, batch: dict, flip: bool = False, ema: bool = True,
              translate: int = 0):
    """Summed loss and correct count over the examples whose `mask` is true."""
    logits = predict_logits(state, batch['image'], flip, ema, translate)
    mask = batch['mask']
    loss = cross_entropy(logits, batch['label'])
    return {'loss_sum': jnp.sum(jnp.where(mask, loss, 0.0)),
            'correct': jnp.sum((jnp.argmax(logits, -1) == batch['label']) & mask),
            'count': jnp.sum(mask)}


def epoch_order(seed: int, epoch: int, num_examples: int, shards: int = 1) -> np.ndarray:
    """(shards, shard length) local row orders of one epoch: a function of (seed, epoch)."""
    rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), EPOCH_ORDER_STREAM), epoch)
    return data_parallel.epoch_order(rng, num_examples, shards)


def lookahead_of(config: ml_collections.ConfigDict, steps_per_epoch: int,
                 total_steps: int) -> Lookahead | None:
    settings = config.get('lookahead')
    if not settings or not settings.every:
        return None
    return Lookahead(settings.every, settings.decay, settings.power,
                     settings.start_epoch * steps_per_epoch, steps_per_epoch, total_steps)


def make_batch_fns(config: ml_collections.ConfigDict, mesh: Mesh, steps_per_epoch: int = 1,
                   total_steps: int = 1):
    """(gather, step): gather(images, labels, orders, index) takes batch `index` from each
    host's shards; step(state, images, labels) augments, normalizes and trains on it.

    steps_per_epoch, total_steps: the run's plan, for alternating flips and Lookahead.
    """
    base_rng = jax.random.key(config.seed)
    alternating = config.get('alternating_flip', False)
    lookahead = lookahead_of(config, steps_per_epoch, total_steps)
    augment_rng = jax.random.fold_in(base_rng, AUGMENT_STREAM)
    dropout_rng = jax.random.fold_in(base_rng, DROPOUT_STREAM)
    cutout_rng = jax.random.fold_in(base_rng, CUTOUT_STREAM)

    def gather(images, labels, orders, index):
        ids = data_parallel.shard_batch_ids(orders, index, config.batch_size // len(orders),
                                            mesh.shape[data_parallel.HOSTS])
        return data_parallel.take_rows(mesh, (images, labels), ids)

    def step(state, batch_images, batch_labels):
        if config.augment:
            batch_images = input_pipeline.random_crop_flip(
                jax.random.fold_in(augment_rng, state.step), batch_images,
                config.crop_padding, config.flip and not alternating,
                config.get('crop_pad_mode', 'constant'))
            if config.flip and alternating:  # half the images came flipped (alternate_flips)
                odd_epoch = (state.step // steps_per_epoch) % 2 == 1
                batch_images = jnp.where(odd_epoch, batch_images[:, :, ::-1], batch_images)
        batch_images = input_pipeline.normalize(batch_images)
        if config.get('cutout_size', 0):
            batch_images = input_pipeline.random_cutout(
                jax.random.fold_in(cutout_rng, state.step), batch_images, config.cutout_size)
        batch = {'image': batch_images, 'label': batch_labels}
        return train_step(state, data_parallel.split_over_devices(mesh, batch), dropout_rng,
                          config.label_smoothing, config.get('ema_decay', 0.0), lookahead)

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


def make_multi_step_fn(config: ml_collections.ConfigDict, mesh: Mesh, num_steps: int,
                       *plan: int):
    """Jitted: batches `index` .. `index + num_steps - 1` in one call, metrics stacked.

    One dispatch instead of `num_steps` round trips through Python, where the host's per-step
    cost rivals a short step (fast GPUs and TPUs). The steps are unrolled, not a lax.scan:
    XLA's CPU backend ran a scan's body at half speed, while the unrolled program trains
    faster than single steps there too (docs/speed.md). Compile time grows with num_steps.
    Each step computes what `make_train_fn`'s does, with the same keys; XLA fuses the program
    as a whole, so results agree with single steps up to float rounding.
    """
    gather, step = make_batch_fns(config, mesh, *plan)

    @functools.partial(jax.jit, donate_argnums=0,
                       compiler_options=xla_options.training_options(config))
    def train_steps(state, images, labels, orders, index):
        metrics = []
        for offset in range(num_steps):
            state, step_metrics = step(state, *gather(images, labels, orders, index + offset))
            metrics.append(step_metrics)
        return state, jax.tree.map(lambda *m: jnp.stack(m), *metrics)

    return train_steps


class HostSplit(NamedTuple):
    """An evaluation split, each process's equal share on its own devices."""
    images: jax.Array  # (processes * rows_per_host, 32, 32, 3) uint8, sharded by host
    labels: jax.Array
    valid: jax.Array   # False on the rows that pad a process's share to the longest one


def host_split(mesh: Mesh, local: input_pipeline.Split, rows_per_host: int) -> HostSplit:
    """Pads this process's rows to `rows_per_host` (repeating one) and places them."""
    pad = rows_per_host - len(local.labels)
    valid = np.arange(rows_per_host) < len(local.labels)
    padded = [np.concatenate([x, np.repeat(x[-1:] if len(x) else np.zeros_like(x[:1]), pad, 0)])
              for x in (local.images, local.labels)]
    return HostSplit(*(data_parallel.by_host(mesh, x) for x in (*padded, valid)))


def make_evaluate(mesh: Mesh, batch_size: int, flip: bool = False, ema: bool = True,
                  translate: int = 0):
    """evaluate(state, split) -> mean loss and accuracy; the batch step compiles once.

    flip, translate: test-time views (predict_logits); ema: the weights' moving average
    where the state keeps one.
    """
    hosts = mesh.shape[data_parallel.HOSTS]
    per_host = -(-batch_size // hosts)

    @jax.jit
    def eval_fn(state, split: HostSplit, index):
        rows_per_host = split.labels.shape[0] // hosts
        positions = index * per_host + jnp.arange(per_host)
        # The last partial batch repeats the final row instead of padding the split; the mask
        # keeps the repeats out of the sums.
        ids = jnp.broadcast_to(jnp.minimum(positions, rows_per_host - 1), (hosts, per_host))
        images, labels, valid = data_parallel.take_rows(
            mesh, (split.images, split.labels, split.valid), ids)
        batch = {'image': input_pipeline.normalize(images), 'label': labels,
                 'mask': valid & jnp.tile(positions < rows_per_host, hosts)}
        return eval_step(state, data_parallel.split_over_devices(mesh, batch), flip, ema,
                         translate)

    def evaluate(state: TrainState, split: HostSplit) -> dict:
        num_batches = -(-split.labels.shape[0] // hosts // per_host)
        sums = [eval_fn(state, split, i) for i in range(num_batches)]
        totals = jax.tree.map(lambda *x: float(np.sum(x)), *jax.device_get(sums))
        return {'loss': totals['loss_sum'] / totals['count'], 'correct': int(totals['correct']),
                'count': int(totals['count']), 'accuracy': totals['correct'] / totals['count']}

    return evaluate


class Preempted(SystemExit):
    """Raised after SIGTERM once a checkpoint is saved; exit status 143 as for SIGTERM."""

    def __init__(self, step: int):
        super().__init__(143)
        self.step = step


@contextlib.contextmanager
def sigterm_received():
    """Yields a function telling whether SIGTERM (a TPU preemption notice) has arrived."""
    received = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield received.is_set  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: received.set())
    try:
        yield received.is_set
    finally:
        signal.signal(signal.SIGTERM, previous)


class EpochSums:
    """Running train loss and accuracy of one epoch, from metrics fetched in order, and the
    seconds spent training it: a checkpoint keeps them, so that an epoch resumed after a
    stop reports what the uninterrupted epoch would, its time before the stop included."""

    def __init__(self, saved: dict | None = None):
        saved = saved or {}
        self.loss = saved.get('loss', 0.0)
        self.correct, self.count = saved.get('correct', 0), saved.get('count', 0)
        self.started = time.time() - saved.get('seconds', 0.0)  # older checkpoints: 0

    def seconds(self) -> float:
        return time.time() - self.started

    def add(self, fetched: list, first_step: int):
        """`fetched`: the metrics of consecutive steps, each entry one step's or stacked."""
        losses, corrects, counts = (np.concatenate([np.atleast_1d(m[k]) for m in fetched])
                                    for k in ('loss', 'correct', 'count'))
        for offset, (loss, correct, count) in enumerate(zip(losses, corrects, counts)):
            if not np.isfinite(loss):
                raise FloatingPointError(
                    f'training loss became {loss} at step {first_step + offset}; stopping. '
                    f'The checkpoints saved before it are kept.')
            self.loss += float(loss) * int(count)
            self.correct += int(correct)
            self.count += int(count)

    def as_dict(self) -> dict:
        return {'loss': self.loss, 'correct': self.correct, 'count': self.count,
                'seconds': self.seconds()}


def plan_steps(config: ml_collections.ConfigDict, num_examples: int,
               shards: int = 1) -> tuple[int, int]:
    """(steps per epoch, total steps): full batches only; num_train_steps > 0 overrides."""
    steps_per_epoch = (num_examples // shards) // (config.batch_size // shards)
    if steps_per_epoch == 0:
        raise validation.ConfigError(f'config.batch_size={config.batch_size} is larger than '
                                     f'the {num_examples} training images')
    total_steps = (config.num_train_steps if config.num_train_steps > 0
                   else config.num_epochs * steps_per_epoch)
    return steps_per_epoch, total_steps


def load_host_data(config: ml_collections.ConfigDict, mesh: Mesh, shards: int):
    """Reads and decodes this process's rows only, and puts them on its devices.

    Returns ((train images, train labels), training examples in all, test HostSplit,
    class names).
    """
    num_train = input_pipeline.num_examples(config.dataset, 'train', config.data_dir)
    train_rows = data_parallel.host_rows(num_train, shards)
    *test_rows, test_rows_per_host = data_parallel.padded_host_rows(
        input_pipeline.num_examples(config.dataset, 'test', config.data_dir))
    train, test = (input_pipeline.load_split(config.dataset, split, config.data_dir,
                                             config.data_cache_dir, rows)
                   for split, rows in (('train', train_rows), ('test', test_rows)))
    train_images = train.images
    if config.augment and config.flip and config.get('alternating_flip', False):
        train_images = input_pipeline.mirror_half(
            jax.random.fold_in(jax.random.key(config.seed), FLIP_STREAM), train_images,
            train_rows[0], num_train)
    if jax.process_count() > 1:
        print(f'Process {jax.process_index()} of {jax.process_count()} holds training rows '
              f'{train_rows[0]}:{train_rows[1]} and test rows {test_rows[0]}:{test_rows[1]}',
              flush=True)
    return ((data_parallel.by_host(mesh, train_images), data_parallel.by_host(mesh, train.labels)),
            num_train, host_split(mesh, test, test_rows_per_host),
            input_pipeline.class_names(config.dataset, config.data_dir))


@dataclasses.dataclass
class Run:
    """What one training run holds fixed: config, data on device, step function, outputs."""
    config: ml_collections.ConfigDict
    workdir: str
    mesh: Mesh
    train: tuple[jax.Array, jax.Array]  # this process's training shards: images, labels
    num_train_examples: int             # in the whole split, all processes together
    shards: int
    test: HostSplit
    train_fn: Any
    train_steps: Any  # config.steps_per_dispatch steps per call; None when that is 1
    evaluate: Any
    # For logging; jitted: called eagerly, its first call compiles each primitive (~1.3 s).
    learning_rate_fn: optax.Schedule
    checkpoints: checkpointing.Checkpoints
    writer: metric_writers.MetricWriter
    meta: dict  # saved with every checkpoint
    steps_per_epoch: int
    total_steps: int
    is_chief: bool

    def say(self, *args):
        if self.is_chief:
            print(*args, flush=True)

    def save(self, step: int, state, sums: EpochSums, test_accuracy: float | None = None):
        self.checkpoints.save(step, state, {**self.meta, 'epoch_sums': sums.as_dict()},
                              test_accuracy)

    def steps_in_next_call(self, index: int, last: int, step: int) -> int:
        """config.steps_per_dispatch when batch `index` starts a block of that many that ends
        by the epoch's end and passes no checkpoint; otherwise 1.

        A function of the step alone: the many-step program rounds differently from the
        one-step program, so a resumed run must call the same one at each step as the
        uninterrupted run did.
        """
        many = self.config.get('steps_per_dispatch', 1)
        every = self.config.checkpoint_every_steps
        passes_checkpoint = every > 0 and step % every + many > every
        fits = index % many == 0 and index + many <= last and not passes_checkpoint
        return many if many > 1 and fits else 1

    def train_epoch(self, state, step: int, epoch: int, sums: EpochSums, preempted):
        """Trains from `step` to the epoch's end; saves and raises Preempted on SIGTERM."""
        config, (images, labels) = self.config, self.train
        order = data_parallel.by_host(self.mesh, data_parallel.host_block(
            epoch_order(config.seed, epoch, self.num_train_examples, self.shards)))
        index = step - epoch * self.steps_per_epoch  # of the next batch in the epoch
        last = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
        self.say(f'\nEPOCH: {epoch}')
        bar = tqdm(disable=not self.is_chief, initial=index, total=last)
        pending, first_pending = [], step
        while index < last:
            count = self.steps_in_next_call(index, last, step)
            train_fn = self.train_fn if count == 1 else self.train_steps
            state, metrics = train_fn(state, images, labels, order, index)
            index, step = index + count, step + count
            pending.append(metrics)
            bar.update(count)
            checkpoint_due = (config.checkpoint_every_steps > 0 and index < last
                              and step % config.checkpoint_every_steps == 0)
            at_sync_point = index % config.log_every_steps == 0 or index == last or checkpoint_due
            # At the epoch's end the run stops after the test (train_and_evaluate).
            stopping = index < last and self.stop_requested(preempted, at_sync_point)
            if at_sync_point or stopping:
                # Waits for these steps only: later ones are not dispatched yet. Raises on a
                # non-finite loss before anything after it is saved.
                fetched = jax.device_get(pending)
                sums.add(fetched, first_pending + 1)
                pending, first_pending = [], step
                loss = float(np.atleast_1d(fetched[-1]['loss'])[-1])
                bar.set_description(f'Loss={loss} Batch_id={index - 1} '
                                    f'Accuracy={100 * sums.correct / sums.count:.2f}')
                self.writer.write_scalars(step, {'train/loss': loss, 'train/learning_rate':
                                                 self.learning_rate_fn(step - 1)})
            if checkpoint_due or stopping:
                self.save(step, state, sums)
            if stopping:
                self.stop_after_sigterm(step)
        bar.close()
        return state, step

    def stop_requested(self, preempted, at_sync_point: bool) -> bool:
        """Whether to save and stop now. One process acts on its own SIGTERM at any step;
        several agree at sync points (steps every process reaches in the same order) with
        one tiny all-gather, since a notice may reach only some of them and all must save
        the same step and leave together."""
        if jax.process_count() == 1:
            return preempted()
        return at_sync_point and bool(
            multihost_utils.process_allgather(np.int32(preempted())).any())

    def stop_after_sigterm(self, step: int):
        """Waits for the checkpoint of `step` to be on disk, says so and exits (143)."""
        self.checkpoints.wait_until_finished()
        self.say(f'\nSIGTERM: saved a checkpoint at step {step}; run the same command to '
                 f'resume.')
        raise Preempted(step)

    def end_epoch(self, state, step: int, epoch: int, sums: EpochSums):
        """Tests, prints the seed's test line, logs the epoch and checkpoints it."""
        seconds = sums.seconds()  # training only
        result = self.evaluate(state, self.test)
        self.say(f"\nTest set: Average loss: {result['loss']:.4f}, Accuracy: "
                 f"{result['correct']}/{result['count']} ({100 * result['accuracy']:.2f}%)")
        self.writer.write_epoch({
            'epoch': epoch, 'step': step, 'epoch_time_s': seconds,
            'learning_rate': float(self.learning_rate_fn(step - 1)),
            'train_loss': sums.loss / max(sums.count, 1),
            'train_accuracy': sums.correct / max(sums.count, 1),
            'test_loss': result['loss'], 'test_accuracy': result['accuracy']})
        self.save(step, state, sums, result['accuracy'])


def setup_run(config: ml_collections.ConfigDict, workdir: str):
    """Everything before the first step: checks, data on device, state (restored if saved).

    Returns (run, state, step, epoch sums so far).
    """
    validation.validate_config(config)
    mesh = data_parallel.create_mesh()
    shards = data_parallel.num_shards(config)
    train, num_train, test, class_names = load_host_data(config, mesh, shards)
    steps_per_epoch, total_steps = plan_steps(config, num_train, shards)
    is_chief = jax.process_index() == 0
    model = create_model(config, len(class_names))
    if is_chief:
        print(models.summarize(model, frozen_layers=frozen_layers(config, model)))
        print(f'Devices: {jax.device_count()} {jax.devices()[0].device_kind} in '
              f'{jax.process_count()} process(es), each taking '
              f'{config.batch_size // jax.device_count()} of the {config.batch_size} images '
              f'of a batch')
    learning_rate_fn = optim.create_learning_rate_fn(config, total_steps)
    state = create_train_state(
        jax.random.fold_in(jax.random.key(config.seed), INIT_STREAM), model,
        create_optimizer(config, model, learning_rate_fn), ema=validation.uses_ema(config))
    meta = {'architecture': {**validation.architecture(config), 'num_classes': len(class_names)},
            'config': config.to_dict(), 'class_names': class_names}
    checkpoints = checkpointing.Checkpoints(workdir, config.max_checkpoints_to_keep)
    # Replicated over the mesh before restoring, so that each process restores its own
    # copies: a restored array moved there afterwards would need a cross-host transfer.
    state = jax.device_put(state, NamedSharding(mesh, P()))
    state, saved_meta = checkpoints.restore_latest_intact(state, meta['architecture'])
    if config.get('stem_whitening') and not saved_meta:  # a checkpoint holds its own
        state = whiten_first_conv(state, model.first_conv, train[0])
    step = int(state.step)
    flip, translate = test_time_views(config)
    run = Run(config, workdir, mesh, train, num_train, shards, test,
              make_train_fn(config, mesh, steps_per_epoch, total_steps),
              (make_multi_step_fn(config, mesh, config.steps_per_dispatch, steps_per_epoch,
                                  total_steps)
               if config.get('steps_per_dispatch', 1) > 1 else None),
              make_evaluate(mesh, config.eval_batch_size, flip, translate=translate),
              jax.jit(learning_rate_fn), checkpoints,
              metric_writers.MetricWriter(workdir, enabled=is_chief, resume_step=step),
              meta, steps_per_epoch, total_steps, is_chief)
    if saved_meta:
        run.say(f'Resuming from the checkpoint at step {step} in {checkpoints.directory}')
    # A checkpoint at an epoch's end holds the finished epoch's sums: nothing of the next.
    mid_epoch = saved_meta and step % steps_per_epoch
    return (run, jax.device_put(state, NamedSharding(mesh, P())), step,
            EpochSums(saved_meta['epoch_sums'] if mid_epoch else None))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Train `config` in `workdir`, resuming from its newest intact checkpoint."""
    validation.validate_config(config)  # a bad config is refused before the lock is taken
    lock = workdir_lock.WorkdirLock(workdir) if jax.process_index() == 0 else None
    try:
        return _train_and_evaluate(config, workdir)
    finally:
        if lock:
            lock.release()


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    run, state, step, sums = setup_run(config, workdir)
    steps_per_epoch, total_steps = run.steps_per_epoch, run.total_steps
    epochs = range(step // steps_per_epoch, -(-total_steps // steps_per_epoch))
    if step >= total_steps:  # finished, maybe mid-epoch: nothing to train, test or log
        run.say(f'Nothing to do: the checkpoint in {workdir} is at step {step} of {total_steps}.')
        epochs = ()
    try:
        with sigterm_received() as preempted:
            for epoch in epochs:
                state, step = run.train_epoch(state, step, epoch, sums, preempted)
                run.end_epoch(state, step, epoch, sums)
                sums = EpochSums()
                if run.stop_requested(preempted, at_sync_point=True):
                    run.stop_after_sigterm(step)
    finally:
        run.checkpoints.close()
        run.writer.close()
    if run.is_chief and (curves := plots.plot_curves(workdir)):
        print(f'Curves: {curves}')
    return state
