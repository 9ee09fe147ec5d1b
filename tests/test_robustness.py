"""Never lose a run: kills, preemption, damaged checkpoints, mismatches, NaNs, bad config."""
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import smoke
from conftest import REPO, rgb_folder, smoke_config
from flax_cifar import checkpointing, evaluation, metric_writers, train, validation
from flax_cifar.errors import InputError



@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return rgb_folder(tmp_path_factory.mktemp('data'), train_per_class=200)


# 600 images / batch 8 = 75 steps an epoch.
RUN_FLAGS = ['--config.num_epochs=4', '--config.checkpoint_every_steps=10',
             '--config.max_checkpoints_to_keep=50']


def main_command(folder, workdir, *extra):
    return [sys.executable, os.path.join(REPO, 'main.py'), '--config',
            os.path.join(REPO, 'configs', 'smoke.py'), f'--config.dataset={folder}',
            f'--workdir={workdir}', *RUN_FLAGS, *extra]


def same_trees(a, b):
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


def same_states(a, b):
    """Bit-identical step, parameters, BatchNorm statistics and optimizer state."""
    arrays = lambda s: (s.step, s.params, s.batch_stats, s.opt_state)
    return same_trees(arrays(a), arrays(b))


def epoch_records(workdir):
    records = metric_writers.read_records(os.path.join(workdir, 'metrics.jsonl'))
    return [{k: v for k, v in r.items() if k != 'epoch_time_s'} for r in records]


def steps_in(workdir):
    directory = os.path.join(workdir, 'checkpoints')
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def final_state(workdir):
    return evaluation.restore_for_inference(str(workdir), 'latest')[0]


@pytest.fixture(scope='module')
def uninterrupted(folder, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('whole')
    subprocess.run(main_command(folder, workdir), check=True, capture_output=True)
    return workdir


def start_and_wait_for(command, predicate, timeout=120):
    """Starts `command`; returns the process once predicate() holds (it must still run)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    lines = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    deadline = time.time() + timeout
    while not predicate(lines):
        assert process.poll() is None, b''.join(lines).decode()[-2000:]
        assert time.time() < deadline, 'timed out'
        time.sleep(0.02)
    return process, lines


@pytest.mark.slow
def test_sigkill_at_any_moment_then_rerun_equals_the_uninterrupted_run(folder, uninterrupted,
                                                                      tmp_path):
    workdir = tmp_path / 'killed'
    has_step = lambda lines: (workdir / 'checkpoints').is_dir() and any(
        s >= 40 for s in steps_in(workdir))
    process, _ = start_and_wait_for(main_command(folder, workdir), has_step)
    process.kill()  # SIGKILL: no handler runs, async saves are cut wherever they are
    process.wait()
    assert max(steps_in(workdir)) < 300, 'the run finished before it could be killed'
    assert (workdir / 'lock').exists()  # left behind, naming the dead run: must not block
    subprocess.run(main_command(folder, workdir), check=True, capture_output=True)
    assert same_states(final_state(uninterrupted), final_state(workdir))
    assert epoch_records(workdir) == epoch_records(uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_143(folder, uninterrupted, tmp_path):
    workdir = tmp_path / 'preempted'
    command = main_command(folder, workdir, '--config.checkpoint_every_steps=-1')
    in_epoch_1 = lambda lines: any(b'EPOCH: 1' in line for line in lines)
    process, lines = start_and_wait_for(command, in_epoch_1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    output = b''.join(lines).decode()
    assert 'SIGTERM: saved a checkpoint at step' in output
    saved = int(output.split('saved a checkpoint at step ')[1].split(';')[0])
    assert saved in steps_in(workdir) and saved % 75  # mid epoch, not an epoch end
    subprocess.run(command, check=True, capture_output=True)
    assert same_states(final_state(uninterrupted), final_state(workdir))
    assert epoch_records(workdir) == epoch_records(uninterrupted)


@pytest.mark.slow
def test_second_run_on_a_live_workdir_is_refused_naming_the_holder(folder, tmp_path):
    workdir = tmp_path / 'busy'
    command = main_command(folder, workdir)
    holder, _ = start_and_wait_for(command, lambda lines: any(b'EPOCH: 0' in l for l in lines))
    try:
        holder.send_signal(signal.SIGSTOP)  # nothing changes in the workdir meanwhile
        before = tree_snapshot(workdir)
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert second.stderr.strip().splitlines()[-1].startswith(
            f'error: --workdir {workdir} is in use by another run (process {holder.pid} on '
            f'host ')
        assert tree_snapshot(workdir) == before
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait()


@pytest.mark.slow
@pytest.mark.parametrize('steps', [75, 80], ids=['epoch_end', 'mid_epoch'])
def test_finished_run_started_again_trains_and_appends_nothing(folder, steps, tmp_path,
                                                              capsys):
    config = smoke_config(folder, num_train_steps=steps, checkpoint_every_steps=25)
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
    train.train_and_evaluate(smoke_config(folder, num_epochs=1), str(tmp_path))
    metrics = tmp_path / 'metrics.jsonl'
    first = metrics.read_text()
    metrics.write_text(first + '{"epoch": 1, "st\x00\n')  # a torn write
    train.train_and_evaluate(smoke_config(folder, num_epochs=2), str(tmp_path))
    assert 'metrics.jsonl is damaged (1 line(s) are not JSON records' in capsys.readouterr().out
    lines = metrics.read_text().splitlines()
    assert lines[0] == first.strip() and [json.loads(l)['epoch'] for l in lines] == [0, 1]
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


@pytest.mark.slow
@pytest.mark.parametrize('how', ['truncate', 'garbage', 'zero_length', 'missing_item'])
def test_damaged_latest_checkpoint_is_set_aside_and_the_run_resumes(folder, how, tmp_path,
                                                                    capsys):
    config = smoke_config(folder, num_epochs=1, checkpoint_every_steps=25,
                        max_checkpoints_to_keep=10)
    whole = train.train_and_evaluate(config, str(tmp_path / 'whole'))
    workdir = tmp_path / 'damaged'
    train.train_and_evaluate(config, str(workdir))
    assert steps_in(workdir) == [25, 50, 75]
    damage(workdir / 'checkpoints' / '75', how)
    os.makedirs(workdir / 'checkpoints' / '60' / 'state')  # a half-written step directory
    intact = {s: sorted(os.listdir(workdir / 'checkpoints' / str(s))) for s in (25, 50)}
    if how == 'zero_length':  # reading only: one line naming the step, nothing moved
        with pytest.raises(InputError, match=r'checkpoint step (60|75) in .* is damaged \('):
            evaluation.restore_for_inference(str(workdir), 'latest')
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
    train.train_and_evaluate(smoke_config(folder, num_train_steps=4), str(tmp_path))
    before = tree_snapshot(tmp_path / 'checkpoints')
    other = smoke_config(folder, num_train_steps=4)
    other.model_args.stage_features = (8, 32)
    with pytest.raises(checkpointing.CheckpointMismatchError,
                       match=r'config\.model_args\.stage_features: \[8, 16\] in the checkpoint, '
                             r'\[8, 32\] here'):
        train.train_and_evaluate(other, str(tmp_path))
    assert tree_snapshot(tmp_path / 'checkpoints') == before


def test_checkpoint_saved_before_a_field_rename_still_matches_its_network():
    config = importlib.import_module('configs.airnet').get_config()
    current = {**checkpointing.architecture(config), 'num_classes': 10}
    old = json.loads(json.dumps(current))  # as saved before dense_first became dense_convs
    old['model_args']['dense_first'] = bool(old['model_args'].pop('dense_convs'))
    meta = {'architecture': old, 'config': {'model': 'airnet', 'model_args': {
        'dense_first': True}}}
    assert checkpointing.architecture_mismatch(old, current) is not None
    upgraded = checkpointing.upgrade_meta(meta)
    assert checkpointing.architecture_mismatch(upgraded['architecture'], current) is None
    assert upgraded['config']['model_args'] == {'dense_convs': 1}


@pytest.mark.slow
def test_turning_on_the_weight_average_mid_run_is_refused_not_set_aside(folder, tmp_path):
    train.train_and_evaluate(smoke_config(folder, num_train_steps=4), str(tmp_path))
    before = tree_snapshot(tmp_path / 'checkpoints')
    with pytest.raises(checkpointing.CheckpointMismatchError,
                       match="config.ema_decay: '<absent>' in the checkpoint, 'on' here"):
        train.train_and_evaluate(smoke_config(folder, num_train_steps=8, ema_decay=0.9),
                                 str(tmp_path))
    assert tree_snapshot(tmp_path / 'checkpoints') == before


@pytest.mark.slow
def test_checkpoint_without_our_meta_item_is_refused_not_set_aside(folder, tmp_path):
    train.train_and_evaluate(smoke_config(folder, num_train_steps=4), str(tmp_path))
    shutil.rmtree(tmp_path / 'checkpoints' / '4' / 'meta')
    before = tree_snapshot(tmp_path / 'checkpoints')
    with pytest.raises(checkpointing.CheckpointMismatchError, match='has no meta item'):
        train.train_and_evaluate(smoke_config(folder, num_train_steps=4), str(tmp_path))
    assert tree_snapshot(tmp_path / 'checkpoints') == before


@pytest.mark.slow
def test_nan_loss_stops_naming_the_step_and_keeps_the_good_checkpoints(folder, tmp_path,
                                                                      monkeypatch):
    real_step = train.train_step

    def poisoned_step(state, *args):
        new_state, metrics = real_step(state, *args)
        return new_state, {**metrics, 'loss': jnp.where(state.step == 6, jnp.nan, metrics['loss'])}

    monkeypatch.setattr(train, 'train_step', poisoned_step)
    config = smoke_config(folder, checkpoint_every_steps=2, log_every_steps=5)
    with pytest.raises(FloatingPointError, match='loss became nan at step 7'):
        train.train_and_evaluate(config, str(tmp_path))
    assert steps_in(tmp_path) == [2, 4, 6]


@pytest.mark.parametrize('override, message', [
    (dict(model='vgg'), "config.model='vgg' is not a model"),
    (dict(dataset=''), 'config.dataset'),
    (dict(dataset='folder:/no/such/dir'), "folder '/no/such/dir' does not exist"),
    (dict(batch_size=0), 'config.batch_size=0 must be a positive integer'),
    (dict(batch_size=-8), 'config.batch_size=-8 must be a positive integer'),
    (dict(num_epochs=0), 'config.num_epochs=0 must be a positive integer'),
    (dict(learning_rate=0.0), 'config.learning_rate=0.0 must be positive'),
    (dict(learning_rate=-0.1), 'config.learning_rate=-0.1 must be positive'),
    (dict(schedule='step'), "config.schedule='step' is not a schedule; choose one of"),
    (dict(num_train_steps=0), 'config.num_train_steps=0 must be -1'),
    (dict(label_smoothing=1.0), 'config.label_smoothing=1.0 must be in [0, 1)'),
    (dict(data_shards=-1), 'config.data_shards=-1 must be 0 (one per process) or a multiple'),
    (dict(data_shards=3), 'config.batch_size=8 does not split over config.data_shards=3'),
    (dict(cutout_size=33), 'config.cutout_size=33 must be an integer from 0 (off) to 32'),
    (dict(cutout_size=-1), 'config.cutout_size=-1 must be an integer from 0 (off) to 32'),
    (dict(ema_decay=1.0), 'config.ema_decay=1.0 must be in [0, 1)'),
    (dict(muon_learning_rate=-0.1), 'config.muon_learning_rate=-0.1 must be 0 (off) or positive'),
    (dict(muon_momentum=1.0), 'config.muon_momentum=1.0 must be in [0, 1)'),
    (dict(eval_translate=16), 'config.eval_translate=16 must be an integer from 0 (off) to 15'),
    (dict(eval_translate=-1), 'config.eval_translate=-1 must be an integer from 0 (off) to 15'),
    (dict(steps_per_dispatch=3), 'config.steps_per_dispatch=3 must be a positive integer that '
                                 'divides config.log_every_steps=2'),
    (dict(crop_pad_mode='wrap'), "config.crop_pad_mode='wrap' must be one of"),
    (dict(bn_bias_lr_scale=0.0), 'config.bn_bias_lr_scale=0.0 must be positive'),
    (dict(lookahead=dict(every=-1)), 'config.lookahead.every=-1 must be 0 (off)'),
    (dict(lookahead=dict(every=5), ema_decay=0.9), 'config.ema_decay=0.9 and '
                                                   'config.lookahead.every=5 both keep'),
])
def test_bad_config_fields_are_named(override, message):
    config = smoke.get_config()
    config.update(override)
    with pytest.raises(validation.ConfigError, match=message.replace('[', r'\[').replace('(', r'\(')
                       .replace(')', r'\)').replace('.', r'\.')):
        validation.validate_config(config)


@pytest.mark.parametrize('name', ['default', 'seed', 'smoke', 'tpu', 'airnet'])
def test_every_shipped_config_is_valid(name):
    config = importlib.import_module(f'configs.{name}').get_config()
    validation.validate_config(config, num_devices=8)


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
         os.path.join(REPO, 'configs', 'smoke.py'), '--config.batch_size=0',
         f'--workdir={workdir}'], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'error: config.batch_size=0 must be a positive integer')
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
