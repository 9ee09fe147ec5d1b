"""Never lose a run: kills, preemption, damaged checkpoints, mismatches, NaNs, bad config."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import smoke
from conftest import CONFIG_FILES, REPO, load_config, rgb_arrays, rgb_folder, smoke_config
from flax_cifar import validation
from flax_cifar.errors import InputError
from flax_cifar.evaluation import inference
from flax_cifar.state import train_state
from flax_cifar.training import step as step_lib
from flax_cifar.training import train
from flax_cifar.workdir import checkpointing, metric_writers


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return rgb_folder(tmp_path_factory.mktemp('data'), train_per_class=200)


@pytest.fixture(scope='module')
def small_data(tmp_path_factory):
    return rgb_arrays(tmp_path_factory.mktemp('small'), train_per_class=40)


# The subprocess runs: 120 images / batch 8 = 15 steps an epoch, 2 epochs.
STEPS_PER_EPOCH = 15
RUN = {'train.epochs': 2, 'checkpoint.every_steps': 6, 'checkpoint.max_to_keep': 50}
RUN_FLAGS = [f'--config.{key}={value}' for key, value in RUN.items()]
# The default recipe, and a weight average with several steps per dispatch: Lookahead, whose
# slow copy also syncs at epoch ends (an EMA, the simpler of the two in the same state slot,
# resumes bit-identical in test_train.py::test_resume_equals_the_uninterrupted_run).
VARIANTS = {'default': {},
            'lookahead_2_steps_per_call': {'average.lookahead.every': 4,
                                           'train.steps_per_dispatch': 2}}


def flags_of(variant: str) -> list[str]:
    return [f'--config.{key}={value}' for key, value in VARIANTS[variant].items()]


def main_args(folder, workdir, *extra):
    return ['--config', os.path.join(REPO, 'configs', 'smoke.py'),
            f'--config.data.dataset={folder}',
            f'--workdir={workdir}', *RUN_FLAGS, *extra]


def main_command(folder, workdir, *extra):
    return [sys.executable, os.path.join(REPO, 'main.py'), *main_args(folder, workdir, *extra)]


def with_fault(fault, folder, workdir, *extra):
    """main.py's command with a fault at a chosen point (tests/fault_points.py)."""
    return [sys.executable, os.path.join(REPO, 'tests', 'fault_points.py'), fault,
            *main_args(folder, workdir, *extra)]


def same_trees(a, b):
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


def same_states(a, b):
    """Bit-identical step, parameters, BatchNorm statistics and weight average (the
    optimizer state shows in them: a step after a resume with another would differ)."""
    of = lambda s: (s.step, s.params, s.batch_stats, train_state.average_of(s))
    return same_trees(of(a), of(b))


def epoch_records(workdir):
    records = metric_writers.read_records(os.path.join(workdir, 'metrics.jsonl'))
    return [{k: v for k, v in r.items() if k != 'epoch_time_s'} for r in records]


def steps_in(workdir):
    directory = os.path.join(workdir, 'checkpoints')
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def final_state(workdir):
    return inference.restore_for_inference(str(workdir), 'latest')[0]


@pytest.fixture(scope='module')
def uninterrupted(small_data, tmp_path_factory):
    """variant -> the workdir of its run, never interrupted (in this process: the same
    computation as main.py's)."""
    runs = {}
    for name, overrides in VARIANTS.items():
        runs[name] = tmp_path_factory.mktemp(name)
        config = smoke_config(small_data)
        config.update_from_flattened_dict({**RUN, **overrides})
        train.train_and_evaluate(config, str(runs[name]))
    return runs


@pytest.mark.slow
@pytest.mark.parametrize('variant', VARIANTS)
def test_killed_at_chosen_points_then_rerun_equals_the_uninterrupted_run(
        small_data, uninterrupted, variant, tmp_path):
    """SIGKILL (no handler runs) during a step, during a checkpoint's background write, and
    between a written step and its rename into place; each rerun resumes, the last finishes
    bit-identical to the run never interrupted."""
    workdir, extra = tmp_path / 'killed', flags_of(variant)
    for fault in ('kill_in_step:8', 'kill_in_save:2', 'kill_at_finalize:2'):
        result = subprocess.run(with_fault(fault, small_data, workdir, *extra),
                                capture_output=True, text=True)
        assert result.returncode == -signal.SIGKILL, (fault, result.stdout[-2000:],
                                                       result.stderr[-2000:])
        assert (workdir / 'lock').exists()  # left behind, naming the dead run: must not block
    assert not (workdir / 'checkpoints_damaged').exists()  # nothing half-written looked final
    subprocess.run(main_command(small_data, workdir, *extra), check=True, capture_output=True)
    assert same_states(final_state(uninterrupted[variant]), final_state(workdir))
    assert epoch_records(workdir) == epoch_records(uninterrupted[variant])


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_143(small_data, uninterrupted, tmp_path):
    workdir = tmp_path / 'preempted'
    extra = ['--config.checkpoint.every_steps=-1']
    # The notice arrives during step 20, in epoch 1 (steps 16-30).
    result = subprocess.run(with_fault('sigterm_in_step:20', small_data, workdir, *extra),
                            capture_output=True, text=True)
    assert result.returncode == 143, result.stderr[-2000:]
    saved = int(result.stdout.split('SIGTERM: saved a checkpoint at step ')[1].split(';')[0])
    # At the next sync point (every 2 steps of the epoch): mid epoch, not at its end.
    assert 20 <= saved <= 22 and saved % STEPS_PER_EPOCH and saved in steps_in(workdir)
    subprocess.run(main_command(small_data, workdir, *extra), check=True, capture_output=True)
    assert same_states(final_state(uninterrupted['default']), final_state(workdir))
    assert epoch_records(workdir) == epoch_records(uninterrupted['default'])


@pytest.mark.slow
def test_second_run_on_a_live_workdir_is_refused_naming_the_holder(small_data, tmp_path):
    workdir = tmp_path / 'busy'
    holder = subprocess.Popen(with_fault('stop_in_step:3', small_data, workdir),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # it freezes itself mid-run, holding the workdir: nothing changes there meanwhile
        deadline = time.time() + 120
        while open(f'/proc/{holder.pid}/stat').read().split(')')[1].split()[0] != 'T':
            assert holder.poll() is None and time.time() < deadline
            time.sleep(0.05)
        before = tree_snapshot(workdir)
        second = subprocess.run(main_command(small_data, workdir), capture_output=True,
                                text=True, timeout=120)
        assert second.returncode != 0
        assert second.stderr.strip().splitlines()[-1].startswith(
            f'error: --workdir {workdir} is in use by another run (process {holder.pid} on '
            f'host ')
        assert tree_snapshot(workdir) == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
@pytest.mark.parametrize('steps', [75, 80], ids=['epoch_end', 'mid_epoch'])
def test_finished_run_started_again_trains_and_appends_nothing(folder, steps, tmp_path,
                                                              capsys):
    config = smoke_config(folder, train=dict(steps=steps), checkpoint=dict(every_steps=25))
    train.train_and_evaluate(config, str(tmp_path))
    kept = [tree_snapshot(tmp_path / d) for d in ('checkpoints', 'tensorboard')]
    records = (tmp_path / 'metrics.jsonl').read_bytes()
    capsys.readouterr()
    state = train.train_and_evaluate(config, str(tmp_path))
    out = capsys.readouterr().out
    assert f'Nothing to do: the checkpoint in {tmp_path} is at step {steps} of {steps}' in out
    assert 'EPOCH' not in out and 'Test set' not in out
    assert int(state.step) == steps
    assert (tmp_path / 'metrics.jsonl').read_bytes() == records
    assert [tree_snapshot(tmp_path / d) for d in ('checkpoints', 'tensorboard')] == kept


@pytest.mark.slow
def test_damaged_metrics_file_is_set_aside_and_its_good_records_kept(folder, tmp_path, capsys):
    train.train_and_evaluate(smoke_config(folder, train=dict(epochs=1)), str(tmp_path))
    metrics = tmp_path / 'metrics.jsonl'
    first = metrics.read_text()
    metrics.write_text(first + '{"epoch": 1, "st\x00\n')  # a torn write
    train.train_and_evaluate(smoke_config(folder, train=dict(epochs=2)), str(tmp_path))
    assert 'metrics.jsonl is damaged (1 line(s) are not JSON records' in capsys.readouterr().out
    lines = metrics.read_text().splitlines()
    assert lines[0] == first.strip() and [json.loads(line)['epoch'] for line in lines] == [0, 1]
    aside = [p for p in os.listdir(tmp_path) if p.startswith('metrics.jsonl.damaged.')]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_text().startswith(first)


def damage(step_dir, how):
    """Damages a step as a crash or a bad disk would: state files truncated or garbage, every
    file of the step zero-length (renamed into place before its data reached the disk), or
    an item missing."""
    if how == 'missing_item':
        shutil.rmtree(os.path.join(step_dir, 'state'))
        return
    files = [os.path.join(d, f) for d, _, fs in
             os.walk(step_dir if how == 'zero_length' else os.path.join(step_dir, 'state'))
             for f in fs]
    assert files
    for path in files:
        if how == 'zero_length':
            open(path, 'wb').close()
        elif how == 'truncate':
            with open(path, 'r+b') as f:
                f.truncate(os.path.getsize(path) // 2)
        else:
            with open(path, 'wb') as f:
                f.write(os.urandom(64))


@pytest.fixture(scope='module')
def trained_once(folder, tmp_path_factory):
    """(config, workdir, final state) of one run with checkpoints at steps 25, 50 and 75,
    which each damage case copies."""
    config = smoke_config(folder, train=dict(epochs=1),
                          checkpoint=dict(every_steps=25, max_to_keep=10))
    workdir = tmp_path_factory.mktemp('trained_once') / 'run'
    whole = train.train_and_evaluate(config, str(workdir))
    assert steps_in(workdir) == [25, 50, 75]
    return config, workdir, whole


@pytest.mark.slow
@pytest.mark.parametrize('how', ['truncate', 'garbage', 'zero_length', 'missing_item'])
def test_damaged_latest_checkpoint_is_set_aside_and_the_run_resumes(trained_once, how, tmp_path,
                                                                    capsys):
    config, trained, whole = trained_once
    workdir = tmp_path / 'damaged'
    shutil.copytree(trained, workdir)
    damage(workdir / 'checkpoints' / '75', how)
    os.makedirs(workdir / 'checkpoints' / '60' / 'state')  # a half-written step directory
    intact = {s: sorted(os.listdir(workdir / 'checkpoints' / str(s))) for s in (25, 50)}
    if how == 'zero_length':  # reading only: one line naming the step, nothing moved
        with pytest.raises(InputError, match=r'checkpoint step (60|75) in .* is damaged \('):
            inference.restore_for_inference(str(workdir), 'latest')
        assert not (workdir / 'checkpoints_damaged').exists()
    capsys.readouterr()
    resumed = train.train_and_evaluate(config, str(workdir))
    out = capsys.readouterr().out
    assert 'checkpoint step 75' in out and 'is damaged' in out
    assert same_states(whole, resumed)
    damaged = os.listdir(workdir / 'checkpoints_damaged')
    assert any(d.startswith('75.') for d in damaged)
    for step, names in intact.items():  # nothing intact was deleted or rewritten
        assert sorted(os.listdir(workdir / 'checkpoints' / str(step))) == names


def tree_snapshot(directory):
    return sorted((os.path.relpath(os.path.join(d, f), directory),
                   os.path.getsize(os.path.join(d, f)), os.path.getmtime(os.path.join(d, f)))
                  for d, _, fs in os.walk(directory) for f in fs)


@pytest.mark.slow
def test_checkpoint_of_another_network_is_refused_and_left_alone(folder, tmp_path):
    train.train_and_evaluate(smoke_config(folder, train=dict(steps=4)), str(tmp_path))
    before = tree_snapshot(tmp_path / 'checkpoints')
    other = smoke_config(folder, train=dict(steps=4))
    other.model_args.stage_features = (8, 32)
    with pytest.raises(checkpointing.CheckpointMismatchError,
                       match=r'config\.model_args\.stage_features: \[8, 16\] in the checkpoint, '
                             r'\[8, 32\] here'):
        train.train_and_evaluate(other, str(tmp_path))
    assert tree_snapshot(tmp_path / 'checkpoints') == before


@pytest.mark.slow
def test_turning_on_the_weight_average_mid_run_is_refused_not_set_aside(folder, tmp_path):
    train.train_and_evaluate(smoke_config(folder, train=dict(steps=4)), str(tmp_path))
    before = tree_snapshot(tmp_path / 'checkpoints')
    with pytest.raises(checkpointing.CheckpointMismatchError,
                       match="config.average.ema_decay: '<absent>' in the checkpoint, 'on' here"):
        train.train_and_evaluate(smoke_config(folder, train=dict(steps=8),
                                              average=dict(ema_decay=0.9)),
                                 str(tmp_path))
    assert tree_snapshot(tmp_path / 'checkpoints') == before


@pytest.mark.slow
def test_checkpoint_without_our_meta_item_is_refused_not_set_aside(folder, tmp_path):
    train.train_and_evaluate(smoke_config(folder, train=dict(steps=4)), str(tmp_path))
    shutil.rmtree(tmp_path / 'checkpoints' / '4' / 'meta')
    before = tree_snapshot(tmp_path / 'checkpoints')
    with pytest.raises(checkpointing.CheckpointMismatchError, match='has no meta item'):
        train.train_and_evaluate(smoke_config(folder, train=dict(steps=4)), str(tmp_path))
    assert tree_snapshot(tmp_path / 'checkpoints') == before


@pytest.mark.slow
def test_nan_loss_stops_naming_the_step_and_keeps_the_good_checkpoints(folder, tmp_path,
                                                                      monkeypatch):
    real_step = step_lib.train_step

    def poisoned_step(state, *args):
        new_state, metrics = real_step(state, *args)
        return new_state, {**metrics, 'loss': jnp.where(state.step == 6, jnp.nan, metrics['loss'])}

    monkeypatch.setattr(step_lib, 'train_step', poisoned_step)
    config = smoke_config(folder, checkpoint=dict(every_steps=2), train=dict(log_every_steps=5))
    with pytest.raises(FloatingPointError, match='loss became nan at step 7'):
        train.train_and_evaluate(config, str(tmp_path))
    assert steps_in(tmp_path) == [2, 4, 6]


# One bad value for every field of validation.FIELDS: each is refused, naming the field.
BAD_VALUES = {
    'seed': 0.5, 'model': 'vgg', 'half_precision': 'bf16',
    'data.dataset': '', 'data.tfds_data_dir': '', 'data.cache_dir': 3, 'data.normalize': 'none',
    'data.shards': -1,
    'augment.enabled': 1, 'augment.crop_padding': 32, 'augment.crop_pad_mode': 'wrap',
    'augment.flip': 'yes', 'augment.alternating_flip': None, 'augment.rotate_degrees': -1.0,
    'augment.rotate_p': 1.5, 'augment.sharpen_p': -0.1, 'augment.sharpen_factors': (2.0, 1.0),
    'augment.color_jiggle_p': 2.0, 'augment.color_jiggle': (0.1, 0.1, 0.5, 0.6),
    'augment.mixup_max': 1.0, 'augment.mixup_ramp': 2.0, 'augment.cutout_size': 33,
    'whitening.layer': 1, 'whitening.eps': 0.0,
    'optim.name': 'lion', 'optim.learning_rate': 0.0, 'optim.schedule': 'step',
    'optim.warmup_fraction': 1.0, 'optim.start_div_factor': 0.0, 'optim.final_div_factor': -1.0,
    'optim.momentum': 1.0, 'optim.nesterov': 'no', 'optim.adam_b1': 1.0, 'optim.adam_b2': -0.1,
    'optim.adam_eps': 0.0, 'optim.weight_decay': -1e-4, 'optim.frozen': 'stem',
    'optim.lr_mults': (('x', -1.0),), 'optim.frozen_after_epochs': (('stem', 1.5),),
    'optim.wd_mults': ('kernel', 1.0), 'optim.muon.learning_rate': -0.1,
    'optim.muon.momentum': 1.0, 'optim.muon.ns_steps': 0, 'optim.muon.normalize_weights': 1,
    'average.ema_decay': 1.0, 'average.ema_warmup': 'yes', 'average.lookahead.every': -1,
    'average.lookahead.decay': 1.5, 'average.lookahead.power': -1.0,
    'average.lookahead.start_epoch': -1, 'average.lookahead.sync_each_epoch': 1,
    'train.batch_size': 0, 'train.epochs': 0, 'train.steps': 0, 'train.schedule_epochs': -1,
    'train.label_smoothing': 1.0, 'train.log_every_steps': 0, 'train.steps_per_dispatch': 0,
    'train.cpu_ynnpack_convolutions': None,
    'eval.batch_size': -1, 'eval.flip': 0, 'eval.translate': 16,
    'checkpoint.every_steps': 0, 'checkpoint.max_to_keep': 0,
    'distributed.coordinator_address': 'host', 'distributed.num_processes': 0,
    'distributed.process_id': -1,
}


def with_field(config, name, value):
    """`config` with the (dotted) field set, past ConfigDict's type checks."""
    node, _, leaf = name.rpartition('.')
    target = config[node] if node else config
    with target.ignore_type():
        target[leaf] = value
    return config


def test_every_field_has_a_bad_value_here():
    """Every field of the default config has its check in validation.FIELDS, and here a
    value the check must refuse."""
    def flat(node, prefix=''):
        return {name for key, value in node.items() for name in (
            flat(value, f'{prefix}{key}.') if hasattr(value, 'items') and key != 'model_args'
            else {prefix + key})}
    assert set(validation.FIELDS) == flat(smoke.get_config())
    assert set(BAD_VALUES) == set(validation.FIELDS) - {'model_args'}


@pytest.mark.parametrize('name', sorted(BAD_VALUES))
def test_every_bad_field_is_refused_by_name(name):
    config = with_field(smoke.get_config(), name, BAD_VALUES[name])
    with pytest.raises(validation.ConfigError) as refused:
        validation.validate_config(config)
    assert str(refused.value).startswith(f'config.{name}={BAD_VALUES[name]!r} ')
    assert '\n' not in str(refused.value)


@pytest.mark.parametrize('override, message', [
    (dict(data=dict(dataset='folder:/no/such/dir')), "folder '/no/such/dir' does not exist"),
    (dict(data=dict(dataset='arrays:/no/such/dir')), "folder '/no/such/dir' does not exist"),
    (dict(data=dict(shards=3)),
     'config.train.batch_size=8 does not split over config.data.shards=3'),
    (dict(train=dict(steps_per_dispatch=3)), 'config.train.steps_per_dispatch=3 must divide '
                                 'config.train.log_every_steps=2'),
    (dict(average=dict(lookahead=dict(every=5), ema_decay=0.9)), 'config.average.ema_decay=0.9 and '
                                                   'config.average.lookahead.every=5 both keep'),
    (dict(train=dict(schedule_epochs=1)), 'config.train.schedule_epochs=1 must be 0 or at least '
                              'config.train.epochs=2'),
    (dict(optim=dict(muon=dict(learning_rate=0.2))),
     "config.optim.muon.learning_rate=0.2 is Muon's rate: positive "
                                   "with config.optim.name='muon'"),
    (dict(optim=dict(name='muon')), "config.optim.muon.learning_rate=0.0 is Muon's rate"),
    (dict(distributed=dict(process_id=1)), 'config.distributed.process_id=1 must be below'),
    (dict(optim=dict(lr_mults=(('.*_norm/bias', 64.0),))),
     "config.optim.lr_mults: '.*_norm/bias' matches no "
                                              "parameter"),
    (dict(optim=dict(wd_mults=(('(', 1.0),))),
     "config.optim.wd_mults: '(' is not a regular expression"),
    (dict(optim=dict(frozen=('no_such_layer',))),
     "config.optim.frozen: 'no_such_layer' matches no parameter"),
    (dict(whitening=dict(layer='stem')),
     "config.whitening.layer='stem': the network has no such layer"),
])
def test_bad_combinations_are_named(override, message):
    config = smoke.get_config()
    config.update(override)
    with pytest.raises(validation.ConfigError, match=re.escape(message)):
        validation.validate_config(config)


def test_a_field_flax_cifar_does_not_read_is_named():
    config = smoke.get_config()
    config.unlock()
    config.batch_sise = 3
    with pytest.raises(validation.ConfigError, match='config.batch_sise is not a field'):
        validation.validate_config(config)
    del config.batch_sise  # a config file that sets a field as it was before the sections
    config.num_epochs = 3
    with pytest.raises(validation.ConfigError,
                       match='^config.num_epochs is now config.train.epochs$'):
        validation.validate_config(config)


@pytest.mark.parametrize('config_file', CONFIG_FILES)
def test_every_shipped_config_is_valid(config_file):
    validation.validate_config(load_config(config_file), num_devices=8)


@pytest.mark.parametrize('rate', [-0.1, 1.0, 1.5])
def test_dropout_outside_unit_interval_is_named(rate):
    config = smoke.get_config()
    config.model_args.dropout_rate = rate
    with pytest.raises(validation.ConfigError, match='config.model_args.dropout_rate'):
        validation.validate_config(config)


def test_batch_that_the_devices_cannot_split_is_named():
    with pytest.raises(validation.ConfigError, match='does not split over 3 devices'):
        validation.validate_config(smoke.get_config(), num_devices=3)


@pytest.mark.slow
def test_command_line_error_is_one_line_and_writes_nothing(tmp_path):
    workdir = tmp_path / 'never'
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, 'main.py'), '--config',
         os.path.join(REPO, 'configs', 'smoke.py'), '--config.train.batch_size=0',
         f'--workdir={workdir}'], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'error: config.train.batch_size=0 must be a positive integer')
    assert 'Traceback' not in result.stderr
    assert not workdir.exists()


def test_keeps_the_latest_few_and_the_best_by_test_accuracy(tmp_path):
    checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=2)
    state = {'w': np.zeros(3, np.float32)}
    for step, accuracy in enumerate([0.2, 0.9, 0.3, None, 0.4, 0.5], start=1):
        checkpoints.save(step, state, {'epoch_sums': {}}, accuracy)
    checkpoints.close()
    assert steps_in(tmp_path) == [2, 5, 6]  # 2 is the best; 5 and 6 the latest two
    assert checkpointing.Checkpoints(str(tmp_path), read_only=True).best_step() == 2


def test_run_stopped_by_bad_data_leaves_no_workdir_behind(tmp_path):
    workdir = tmp_path / 'never' / 'nested'
    with pytest.raises(InputError, match='no-such-folder'):
        train.train_and_evaluate(smoke_config(f'folder:{tmp_path}/no-such-folder'), str(workdir))
    assert not (tmp_path / 'never').exists()
