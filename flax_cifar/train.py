"""Training: the step, the epoch loop and one driver, `train_and_evaluate`.

The data live on the device. Every random choice (init, epoch order, crops, flips, dropout)
is a function of (config.seed, step) (streams.py), so a resumed run retraces the
uninterrupted one.
"""
import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from flax_cifar import (augment, averaging, checkpointing, data_parallel, evaluation,
                        host_data, input_pipeline, metric_writers, models, optim, plots,
                        preemption, streams, train_state, validation, workdir_lock,
                        xla_options)
from flax_cifar.averaging import Lookahead
from flax_cifar.host_data import HostSplit
from flax_cifar.train_state import TrainState


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
        loss = optim.cross_entropy(logits, batch['label'], label_smoothing).mean()
        return loss, (logits, updates['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    state = averaging.update_average(state, ema_decay, lookahead)
    metrics = {'loss': loss,
               'correct': jnp.sum(jnp.argmax(logits, -1) == batch['label']),
               'count': batch['label'].shape[0]}
    return state, metrics


def make_batch_fns(config: ml_collections.ConfigDict, mesh: Mesh, steps_per_epoch: int = 1,
                   total_steps: int = 1):
    """(gather, step): gather(images, labels, orders, index) takes batch `index` from each
    host's shards; step(state, images, labels) augments, normalizes and trains on it.

    steps_per_epoch, total_steps: the run's plan, for alternating flips and Lookahead.
    """
    alternating = config.get('alternating_flip', False)
    lookahead = averaging.lookahead_of(config, steps_per_epoch, total_steps)
    augment_rng = streams.key(config.seed, streams.AUGMENT)
    dropout_rng = streams.key(config.seed, streams.DROPOUT)
    cutout_rng = streams.key(config.seed, streams.CUTOUT)

    def gather(images, labels, orders, index):
        ids = data_parallel.shard_batch_ids(orders, index, config.batch_size // len(orders),
                                            mesh.shape[data_parallel.HOSTS])
        return data_parallel.take_rows(mesh, (images, labels), ids)

    def step(state, batch_images, batch_labels):
        if config.augment:
            batch_images = augment.random_crop_flip(
                jax.random.fold_in(augment_rng, state.step), batch_images,
                config.crop_padding, config.flip and not alternating,
                config.get('crop_pad_mode', 'constant'))
            if config.flip and alternating:  # half the images came flipped (alternate_flips)
                odd_epoch = (state.step // steps_per_epoch) % 2 == 1
                batch_images = jnp.where(odd_epoch, batch_images[:, :, ::-1], batch_images)
        batch_images = input_pipeline.normalize(batch_images)
        if config.get('cutout_size', 0):
            batch_images = augment.random_cutout(
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


def make_multi_step_fn(config: ml_collections.ConfigDict, mesh: Mesh, steps_per_dispatch: int,
                       *plan: int):
    """Jitted: batches `index` .. `index + steps_per_dispatch - 1` in one call, metrics
    stacked.

    One dispatch instead of `steps_per_dispatch` round trips through Python, where the host's per-step
    cost rivals a short step (fast GPUs and TPUs). The steps are unrolled, not a lax.scan:
    XLA's CPU backend ran a scan's body at half speed, while the unrolled program trains
    faster than single steps there too (docs/speed.md). Compile time grows with the count.
    Each step computes what `make_train_fn`'s does, with the same keys; XLA fuses the program
    as a whole, so results agree with single steps up to float rounding.
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
    multi_step_fn: Any  # config.steps_per_dispatch steps per call; None when that is 1
    evaluate: Any
    # For logging; jitted: called eagerly, its first call compiles each primitive (slow).
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

    def steps_in_next_dispatch(self, index: int, last: int, step: int) -> int:
        """config.steps_per_dispatch when batch `index` starts a block of that many that ends
        by the epoch's end and passes no checkpoint; otherwise 1.

        A function of the step alone: the many-step program rounds differently from the
        one-step program, so a resumed run must call the same one at each step as the
        uninterrupted run did.
        """
        steps = self.config.get('steps_per_dispatch', 1)
        every = self.config.checkpoint_every_steps
        passes_checkpoint = every > 0 and step % every + steps > every
        fits = index % steps == 0 and index + steps <= last and not passes_checkpoint
        return steps if steps > 1 and fits else 1

    def train_epoch(self, state, step: int, epoch: int, sums: EpochSums, preempted):
        """Trains from `step` to the epoch's end; saves and raises Preempted on SIGTERM."""
        config, (images, labels) = self.config, self.train
        order = data_parallel.by_host(self.mesh, data_parallel.host_block(
            host_data.epoch_order(config.seed, epoch, self.num_train_examples, self.shards)))
        index = step - epoch * self.steps_per_epoch  # of the next batch in the epoch
        last = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
        self.say(f'\nEPOCH: {epoch}')
        bar = tqdm(disable=not self.is_chief, initial=index, total=last)
        pending, first_pending = [], step
        while index < last:
            count = self.steps_in_next_dispatch(index, last, step)
            train_fn = self.train_fn if count == 1 else self.multi_step_fn
            state, metrics = train_fn(state, images, labels, order, index)
            index, step = index + count, step + count
            pending.append(metrics)
            bar.update(count)
            checkpoint_due = (config.checkpoint_every_steps > 0 and index < last
                              and step % config.checkpoint_every_steps == 0)
            at_sync_point = index % config.log_every_steps == 0 or index == last or checkpoint_due
            # At the epoch's end the run stops after the test (train_and_evaluate).
            stopping = index < last and preemption.stop_agreed(preempted, at_sync_point)
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

    def stop_after_sigterm(self, step: int):
        """Waits for the checkpoint of `step` to be on disk, says so and exits (143)."""
        self.checkpoints.wait_until_finished()
        self.say(f'\nSIGTERM: saved a checkpoint at step {step}; run the same command to '
                 f'resume.')
        raise preemption.Preempted(step)

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
    train, num_train, test, class_names = host_data.load_host_data(config, mesh, shards)
    steps_per_epoch, total_steps = plan_steps(config, num_train, shards)
    is_chief = jax.process_index() == 0
    model = train_state.create_model(config, len(class_names))
    if is_chief:
        print(models.summarize(model, frozen_layers=train_state.frozen_layers(config, model)))
        print(f'Devices: {jax.device_count()} {jax.devices()[0].device_kind} in '
              f'{jax.process_count()} process(es), each taking '
              f'{config.batch_size // jax.device_count()} of the {config.batch_size} images '
              f'of a batch')
    learning_rate_fn = optim.create_learning_rate_fn(config, total_steps)
    state = train_state.create_train_state(
        streams.key(config.seed, streams.INIT), model,
        train_state.create_optimizer(config, model, learning_rate_fn),
        ema=validation.uses_ema(config))
    meta = {'architecture': {**checkpointing.architecture(config), 'num_classes': len(class_names)},
            'config': config.to_dict(), 'class_names': class_names}
    checkpoints = checkpointing.Checkpoints(workdir, config.max_checkpoints_to_keep)
    # Replicated over the mesh before restoring, so that each process restores its own
    # copies: a restored array moved there afterwards would need a cross-host transfer.
    state = jax.device_put(state, NamedSharding(mesh, P()))
    state, saved_meta = checkpoints.restore_latest_intact(state, meta['architecture'])
    if config.get('stem_whitening') and not saved_meta:  # a checkpoint holds its own
        state = train_state.whiten_first_conv(state, model.first_conv, train[0])
    step = int(state.step)
    flip, translate = evaluation.test_time_views(config)
    run = Run(
        config=config, workdir=workdir, mesh=mesh, train=train, num_train_examples=num_train,
        shards=shards, test=test,
        train_fn=make_train_fn(config, mesh, steps_per_epoch, total_steps),
        multi_step_fn=(make_multi_step_fn(config, mesh, config.steps_per_dispatch,
                                          steps_per_epoch, total_steps)
                       if config.get('steps_per_dispatch', 1) > 1 else None),
        evaluate=evaluation.make_evaluate(mesh, config.eval_batch_size, flip,
                                          translate=translate),
        learning_rate_fn=jax.jit(learning_rate_fn), checkpoints=checkpoints,
        writer=metric_writers.MetricWriter(workdir, enabled=is_chief, resume_step=step),
        meta=meta, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
        is_chief=is_chief)
    if saved_meta:
        run.say(f'Resuming from the checkpoint at step {step} in {checkpoints.directory}')
    # A checkpoint at an epoch's end holds the finished epoch's sums: nothing of the next.
    mid_epoch = saved_meta and step % steps_per_epoch
    return (run, jax.device_put(state, NamedSharding(mesh, P())), step,
            EpochSums(saved_meta['epoch_sums'] if mid_epoch else None))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Train `config` in `workdir`, resuming from its newest intact checkpoint."""
    validation.validate_config(config)  # a bad config is refused before the lock is taken
    lock = workdir_lock.acquire_on_chief(workdir)
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
        with preemption.sigterm_received() as preempted:
            for epoch in epochs:
                state, step = run.train_epoch(state, step, epoch, sums, preempted)
                run.end_epoch(state, step, epoch, sums)
                sums = EpochSums()
                if preemption.stop_agreed(preempted, at_sync_point=True):
                    run.stop_after_sigterm(step)
    finally:
        run.checkpoints.close()
        run.writer.close()
    if run.is_chief and (curves := plots.plot_curves(workdir)):
        print(f'Curves: {curves}')
    return state
