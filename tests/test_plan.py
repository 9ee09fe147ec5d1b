"""The run's plan (training/plan.py): which steps a dispatch takes, and which steps report,
checkpoint and end an epoch, walked over whole runs as the loop walks them."""
import pytest

from conftest import smoke_config
from flax_cifar.errors import ConfigError
from flax_cifar.training import plan as plan_lib


def walk(plan):
    """(first step, size) of every dispatch from step 0 to the stop, as the loop calls them."""
    step, dispatches = 0, []
    while step < plan.stop_step:
        dispatches.append((step, plan.dispatch_size(step)))
        step += dispatches[-1][1]
    return dispatches


@pytest.mark.parametrize('per_dispatch, checkpoint_every, stop', [
    (1, 5, 36), (4, 5, 36), (4, -1, 36), (3, 4, 30), (4, 5, 29)])
def test_dispatches_cover_every_step_once_and_cross_no_epoch_end_or_checkpoint(
        per_dispatch, checkpoint_every, stop):
    plan = plan_lib.Plan(steps_per_epoch=12, stop_step=stop, schedule_steps=36,
                         steps_per_dispatch=per_dispatch, log_every=4,
                         checkpoint_every=checkpoint_every)
    dispatches = walk(plan)
    assert sum(size for _, size in dispatches) == stop
    for first, size in dispatches:
        assert size in (1, per_dispatch)
        if size > 1:
            assert first % per_dispatch == 0  # aligned within the epoch (12 % 4 == 0 here)
            inside = range(first + 1, first + size)  # the steps a dispatch runs past
            assert not any(plan.ends_epoch(s) or plan.checkpoints(s) for s in inside)
    if per_dispatch == 4 and checkpoint_every == -1 and stop == 36:
        assert [size for _, size in dispatches] == [4] * 9  # nothing in the way


def test_reports_checkpoints_and_epoch_ends_fall_where_the_config_says():
    plan = plan_lib.Plan(steps_per_epoch=12, stop_step=30, schedule_steps=36,
                         steps_per_dispatch=1, log_every=8, checkpoint_every=5)
    ends = [s for s in range(1, 31) if plan.ends_epoch(s)]
    saves = [s for s in range(1, 31) if plan.checkpoints(s)]
    reports = [s for s in range(1, 31) if plan.reports(s)]
    assert ends == [12, 24, 30]                     # the last epoch stops early, at the stop
    assert saves == [5, 10, 15, 20, 25]             # 30 ends the run: its own save
    # Every 8 steps of an epoch, at epoch ends and at checkpoints (a save is fetched first).
    assert reports == [5, 8, 10, 12, 15, 20, 24, 25, 30]
    assert plan.num_epochs == 3 and plan.steps_in(2) == 6 and plan.epoch_of(25) == (2, 1)


def test_plan_steps_reads_the_config():
    config = smoke_config(train=dict(batch_size=8, epochs=2, schedule_epochs=5,
                                     steps_per_dispatch=2,
                                     log_every_steps=2), checkpoint=dict(every_steps=3))
    plan = plan_lib.plan_steps(config, num_examples=100)
    assert plan == plan_lib.Plan(12, 24, 60, 2, 2, 3)  # 100 // 8 full batches an epoch
    config.train.steps = 7
    assert plan_lib.plan_steps(config, num_examples=100).stop_step == 7
    with pytest.raises(ConfigError,
                       match='config.train.batch_size=8 is larger than the 5 training'):
        plan_lib.plan_steps(config, num_examples=5)
