"""`train_and_evaluate`: a run, top to bottom. It resumes from the workdir's newest intact
checkpoint and trains with the jitted step (step.py); the plan (plan.py) says which steps
report, checkpoint and end an epoch (tested then); on SIGTERM it saves and stops where every
process agrees to (preemption.py).
"""
import json

import jax
import ml_collections
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from flax_cifar import models, plots, storage, streams, validation
from flax_cifar.data import host_data
from flax_cifar.evaluation import evaluate, views
from flax_cifar.parallel import data_parallel
from flax_cifar.state import optim, train_state
from flax_cifar.training import plan as plan_lib
from flax_cifar.training import preemption, progress, whitening
from flax_cifar.training import step as step_lib
from flax_cifar.training.progress import EpochSums
from flax_cifar.workdir import checkpointing, metric_writers
from flax_cifar.workdir import lock as workdir_lock


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
    mesh = data_parallel.create_mesh()
    data = host_data.load_host_data(config, mesh)
    plan = plan_lib.plan_steps(config, data.num_train, data.shards)
    learning_rate_fn = optim.create_learning_rate_fn(config.optim, plan.schedule_steps)
    checkpoints = checkpointing.Checkpoints(workdir, config.checkpoint.max_to_keep)
    meta = checkpointing.run_meta(config, data.class_names)
    state, sums, log = _start(config, workdir, mesh, data, plan, learning_rate_fn, checkpoints,
                              meta)
    step = int(state.step)
    train_fns = {n: step_lib.make_train_fn(config, mesh, plan.steps_per_epoch,
                                           plan.schedule_steps, n)
                 for n in {1, plan.steps_per_dispatch}}
    test = evaluate.make_evaluate(mesh, config.eval.batch_size, *views.test_time_views(config.eval),
                                  normalization=config.data.normalize)
    order, pending = None, []

    def save(accuracy=None):
        checkpoints.save(step, state, {**meta, 'epoch_sums': sums.as_dict()}, accuracy)

    try:
        with preemption.sigterm_received() as preempted:
            while step < plan.stop_step:
                epoch, index = plan.epoch_of(step)
                if order is None or index == 0:
                    order = data_parallel.by_host(mesh, data_parallel.host_block(
                        host_data.epoch_order(config.seed, epoch, data.num_train, data.shards)))
                    log.console.start_epoch(epoch, index, plan.steps_in(epoch))
                count = plan.dispatch_size(step)
                state, metrics = train_fns[count](state, data.train_images, data.train_labels,
                                                  order, index)
                step += count
                pending.append(metrics)
                log.console.advance(count)
                ends_epoch = plan.ends_epoch(step)
                stopping = not ends_epoch and preemption.stop_agreed(preempted, plan.reports(step))
                if plan.reports(step) or stopping:  # raises on a non-finite loss: before a save
                    log.steps(step, index + count, pending, sums)
                    pending = []
                if plan.checkpoints(step) or stopping:
                    save()
                if ends_epoch:
                    seconds = sums.seconds()  # training only
                    result = test(state, data.test)
                    log.epoch(epoch, step, sums, seconds, result)
                    save(result['accuracy'])
                    sums = EpochSums()
                    stopping = preemption.stop_agreed(preempted, at_sync_point=True)
                if stopping:
                    _stop_after_sigterm(checkpoints, log.console, step)
    finally:
        checkpoints.close()
        log.writer.close()
    if jax.process_index() == 0:
        plots.plot_curves(workdir)
        log.console.say(progress.summary(metric_writers.read_records(
            storage.join(workdir, 'metrics.jsonl')), workdir, checkpointing.contents(workdir)))
    return state


def _stop_after_sigterm(checkpoints, console, step: int):
    checkpoints.wait_until_finished()
    console.say(f'\nSIGTERM: saved a checkpoint at step {step}; run the same command to '
                f'resume.')
    raise preemption.Preempted(step)


def _start(config, workdir, mesh, data, plan, learning_rate_fn, checkpoints, meta):
    """(state, epoch sums so far, the run's log): the network's summary printed, the state
    restored or created, the run's config written where it trains."""
    is_chief = jax.process_index() == 0
    model = train_state.model_of(config, len(data.class_names))
    console = progress.Console(is_chief, plan.num_epochs, config.train.batch_size)
    console.say(models.summarize(model, is_frozen=optim.frozen_test(config)))
    console.say(f'Devices: {jax.device_count()} {jax.devices()[0].device_kind} in '
                f'{jax.process_count()} process(es), each taking '
                f'{config.train.batch_size // jax.device_count()} of the '
                f'{config.train.batch_size} images of a batch')
    state, sums = _initial_state(config, model, mesh, data, plan, learning_rate_fn,
                                 checkpoints, meta['architecture'], console)
    step = int(state.step)
    writer = metric_writers.MetricWriter(workdir, enabled=is_chief, resume_step=step)
    if step >= plan.stop_step:  # finished, maybe mid-epoch: nothing to train, test or log
        console.say(f'Nothing to do: the checkpoint in {workdir} is at step {step} of '
                    f'{plan.stop_step}.')
    else:
        if is_chief:  # a finished run leaves its workdir as it was
            storage.write_atomic(storage.join(workdir, 'config.json'),
                                 json.dumps(config.to_dict(), indent=1, default=str))
            writer.write_config(config.to_dict())
        console.say('Compiling the train step (the first batch waits for it)')
    return state, sums, progress.RunLog(console, writer, jax.jit(learning_rate_fn))


def _initial_state(config, model, mesh, data, plan, learning_rate_fn, checkpoints,
                   architecture, console):
    """(state, epoch sums so far): the newest intact checkpoint's, else a new state with
    its whitened layer set from the training images, replicated over the mesh."""
    state = train_state.create_train_state(
        streams.key(config.seed, streams.INIT), model,
        optim.create_optimizer(config, learning_rate_fn, plan.steps_per_epoch),
        ema=train_state.keeps_average(config.average))
    # Replicated over the mesh before restoring, so that each process restores its own
    # copies: a restored array moved there afterwards would need a cross-host transfer.
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(state, replicated)
    state, saved = checkpoints.restore_latest_intact(state, architecture)
    if saved:
        console.say(f'Resuming from the checkpoint at step {int(state.step)} in '
                    f'{checkpoints.directory}')
    elif config.whitening.layer:  # a checkpoint holds its own
        state = whitening.whiten_layer(state, config.whitening.layer, data.train_images,
                                       config.data.normalize, config.whitening.eps)
    # A checkpoint at an epoch's end holds the finished epoch's sums: nothing of the next.
    mid_epoch = saved and int(state.step) % plan.steps_per_epoch
    return (jax.device_put(state, replicated),
            EpochSums(saved['epoch_sums'] if mid_epoch else None))
