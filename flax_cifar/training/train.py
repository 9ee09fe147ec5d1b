"""`train_and_evaluate`: a run, top to bottom. It resumes from the workdir's newest intact
checkpoint, trains epoch by epoch with the jitted step (step.py), tests after each epoch,
checkpoints every epoch and every config.checkpoint_every_steps, and on SIGTERM saves and
stops where every process agrees to (preemption.py).
"""
import json
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from flax_cifar import models, plots, storage, streams, validation
from flax_cifar.data import host_data
from flax_cifar.errors import ConfigError
from flax_cifar.evaluation import evaluate, views
from flax_cifar.parallel import data_parallel
from flax_cifar.training import (
    checkpointing,
    metric_writers,
    optim,
    preemption,
    progress,
    train_state,
    workdir_lock,
)
from flax_cifar.training import step as step_lib
from flax_cifar.training.progress import EpochSums


class Plan(NamedTuple):
    steps_per_epoch: int
    total_steps: int     # where this run stops
    schedule_steps: int  # what the learning-rate schedule and Lookahead span

    def epochs_from(self, step: int) -> range:
        return range(step // self.steps_per_epoch, -(-self.total_steps // self.steps_per_epoch))

    def steps_in(self, epoch: int) -> int:
        return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)


def plan_steps(config: ml_collections.ConfigDict, num_examples: int, shards: int = 1) -> Plan:
    """Full batches only; num_train_steps > 0 stops early; schedule_epochs > 0 stretches the
    schedule beyond the run (the first epochs of a longer one)."""
    steps_per_epoch = (num_examples // shards) // (config.batch_size // shards)
    if steps_per_epoch == 0:
        raise ConfigError(f'config.batch_size={config.batch_size} is larger than the '
                          f'{num_examples} training images')
    total = (config.num_train_steps if config.num_train_steps > 0
             else config.num_epochs * steps_per_epoch)
    schedule = config.schedule_epochs * steps_per_epoch if config.schedule_epochs else total
    return Plan(steps_per_epoch, total, max(schedule, total))


def steps_in_next_dispatch(config: ml_collections.ConfigDict, index: int, last: int,
                           step: int) -> int:
    """config.steps_per_dispatch where batch `index` starts a block of that many that ends by
    the epoch's end (`last`) and passes no checkpoint; otherwise 1. A function of the step
    alone: the many-step program rounds differently from the one-step one, so a resumed run
    calls the same program at each step as the uninterrupted run did."""
    steps, every = config.steps_per_dispatch, config.checkpoint_every_steps
    passes_checkpoint = every > 0 and step % every + steps > every
    fits = index % steps == 0 and index + steps <= last and not passes_checkpoint
    return steps if steps > 1 and fits else 1


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
    """Train `config` in `workdir`, resuming from its newest intact checkpoint; the state."""
    validation.validate_config(config)  # a bad config is refused before the lock is taken
    lock = workdir_lock.acquire_on_chief(workdir)
    try:
        return _train(config, workdir)
    finally:
        if lock:
            lock.release()


def _train(config: ml_collections.ConfigDict, workdir: str):
    is_chief = jax.process_index() == 0
    mesh = data_parallel.create_mesh()
    data = host_data.load_host_data(config, mesh)
    plan = plan_steps(config, data.num_train, data.shards)
    model = train_state.create_model(config, len(data.class_names))
    console = progress.Console(is_chief, len(plan.epochs_from(0)), config.batch_size)
    console.say(models.summarize(model, is_frozen=optim.frozen_test(config)))
    console.say(f'Devices: {jax.device_count()} {jax.devices()[0].device_kind} in '
                f'{jax.process_count()} process(es), each taking '
                f'{config.batch_size // jax.device_count()} of the {config.batch_size} images '
                f'of a batch')
    checkpoints = checkpointing.Checkpoints(workdir, config.max_checkpoints_to_keep)
    meta = checkpointing.run_meta(config, data.class_names)
    state, sums = _initial_state(config, model, mesh, data, plan, checkpoints, meta, console)
    step = int(state.step)
    writer = metric_writers.MetricWriter(workdir, enabled=is_chief, resume_step=step)
    epochs = plan.epochs_from(step) if step < plan.total_steps else range(0)
    if is_chief and epochs:  # a finished run leaves its workdir as it was
        storage.write_atomic(storage.join(workdir, 'config.json'),
                             json.dumps(config.to_dict(), indent=1, default=str))
        writer.write_config(config.to_dict())
    learning_rate = jax.jit(optim.create_learning_rate_fn(config, plan.schedule_steps))
    train_fns = {1: step_lib.make_train_fn(config, mesh, plan.steps_per_epoch,
                                           plan.schedule_steps)}
    if config.steps_per_dispatch > 1:
        train_fns[config.steps_per_dispatch] = step_lib.make_multi_step_fn(
            config, mesh, config.steps_per_dispatch, plan.steps_per_epoch, plan.schedule_steps)
    test = evaluate.make_evaluate(mesh, config.eval_batch_size, *views.test_time_views(config),
                                  normalization=config.normalize)
    if step >= plan.total_steps:  # finished, maybe mid-epoch: nothing to train, test or log
        console.say(f'Nothing to do: the checkpoint in {workdir} is at step {step} of '
                    f'{plan.total_steps}.')

    def save(state, sums, accuracy=None):
        checkpoints.save(step, state, {**meta, 'epoch_sums': sums.as_dict()}, accuracy)

    def stop_after_sigterm():
        checkpoints.wait_until_finished()
        console.say(f'\nSIGTERM: saved a checkpoint at step {step}; run the same command to '
                    f'resume.')
        raise preemption.Preempted(step)

    if epochs:
        console.say('Compiling the train step (the first batch waits for it)')
    try:
        with preemption.sigterm_received() as preempted:
            for epoch in epochs:
                order = data_parallel.by_host(mesh, data_parallel.host_block(
                    host_data.epoch_order(config.seed, epoch, data.num_train, data.shards)))
                index, last = step - epoch * plan.steps_per_epoch, plan.steps_in(epoch)
                console.start_epoch(epoch, index, last)
                pending, first_pending = [], step
                while index < last:
                    count = steps_in_next_dispatch(config, index, last, step)
                    state, metrics = train_fns[count](state, data.train_images,
                                                      data.train_labels, order, index)
                    index, step = index + count, step + count
                    pending.append(metrics)
                    console.advance(count)
                    checkpoint_due = (config.checkpoint_every_steps > 0 and index < last
                                      and step % config.checkpoint_every_steps == 0)
                    at_sync = index % config.log_every_steps == 0 or index == last or checkpoint_due
                    # At the epoch's end the run stops after the test, below.
                    stopping = index < last and preemption.stop_agreed(preempted, at_sync)
                    if at_sync or stopping:
                        # Waits for these steps only; raises on a non-finite loss before
                        # anything after it is saved.
                        fetched = jax.device_get(pending)
                        sums.add(fetched, first_pending + 1)
                        pending, first_pending = [], step
                        loss = float(np.atleast_1d(fetched[-1]['loss'])[-1])
                        rate = console.report(loss, index, sums)
                        writer.write_scalars(step, {
                            'train/loss': loss, 'train/learning_rate': learning_rate(step - 1),
                            **({'train/images_per_second': rate} if rate else {})})
                    if checkpoint_due or stopping:
                        save(state, sums)
                    if stopping:
                        stop_after_sigterm()
                seconds = sums.seconds()  # training only
                result = test(state, data.test)
                console.end_epoch(result, seconds)
                writer.write_epoch({
                    'epoch': epoch, 'step': step, 'epoch_time_s': seconds,
                    'learning_rate': float(learning_rate(step - 1)),
                    'train_loss': sums.loss / max(sums.count, 1),
                    'train_accuracy': sums.accuracy(),
                    'test_loss': result['loss'], 'test_accuracy': result['accuracy']})
                save(state, sums, result['accuracy'])
                sums = EpochSums()
                if preemption.stop_agreed(preempted, at_sync_point=True):
                    stop_after_sigterm()
    finally:
        checkpoints.close()
        writer.close()
    if is_chief:
        plots.plot_curves(workdir)
        console.say(progress.summary(metric_writers.read_records(
            storage.join(workdir, 'metrics.jsonl')), workdir, checkpointing.contents(workdir)))
    return state


def _initial_state(config, model, mesh, data, plan, checkpoints, meta, console):
    """(state, epoch sums so far): the newest intact checkpoint's, else a new state with
    its whitened layer set from the training images, replicated over the mesh."""
    learning_rate_fn = optim.create_learning_rate_fn(config, plan.schedule_steps)
    state = train_state.create_train_state(
        streams.key(config.seed, streams.INIT), model,
        optim.create_optimizer(config, learning_rate_fn, plan.steps_per_epoch),
        ema=validation.uses_ema(config))
    # Replicated over the mesh before restoring, so that each process restores its own
    # copies: a restored array moved there afterwards would need a cross-host transfer.
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(state, replicated)
    state, saved = checkpoints.restore_latest_intact(state, meta['architecture'])
    if saved:
        console.say(f'Resuming from the checkpoint at step {int(state.step)} in '
                    f'{checkpoints.directory}')
    elif config.stem_whitening:  # a checkpoint holds its own
        state = train_state.whiten_layer(state, config.stem_whitening, data.train_images,
                                         config.normalize, config.whitening_eps)
    # A checkpoint at an epoch's end holds the finished epoch's sums: nothing of the next.
    mid_epoch = saved and int(state.step) % plan.steps_per_epoch
    return (jax.device_put(state, replicated),
            EpochSums(saved['epoch_sums'] if mid_epoch else None))
