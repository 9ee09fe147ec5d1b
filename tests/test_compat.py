"""Checkpoints written by earlier versions: their saved configs read as today's (compat.py)."""
import json
import os
import shutil

from configs import airnet, default
from conftest import rgb_folder, smoke_config
from flax_cifar.evaluation import inference
from flax_cifar.training import train
from flax_cifar.workdir import checkpointing, compat

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
FLAT_RUN = os.path.join(FIXTURES, 'flat_config_run')


def test_checkpoint_saved_before_a_field_rename_still_matches_its_network():
    config = airnet.get_config()
    current = {**checkpointing.architecture(config), 'num_classes': 10}
    old = json.loads(json.dumps(current))  # as saved before dense_first became dense_convs
    old['model_args']['dense_first'] = bool(old['model_args'].pop('dense_convs'))
    meta = {'architecture': old, 'config': {'model': 'airnet', 'model_args': {
        'dense_first': True}}}
    assert checkpointing.architecture_mismatch(old, current) is not None
    upgraded = compat.upgrade_meta(meta)
    assert checkpointing.architecture_mismatch(upgraded['architecture'], current) is None
    assert upgraded['config']['model_args'] == {'dense_convs': 1}


def test_earlier_fields_read_as_todays():
    old = {'model': 'seed', 'model_args': {}, 'stem_whitening': True, 'bn_bias_lr_scale': 64.0,
           'muon_learning_rate': 0.6, 'onecycle_div_factor': 25.0,
           'onecycle_final_div_factor': 1e4}
    config = compat.upgrade_config(old)
    optim = config['optim']
    assert (optim['start_div_factor'], optim['final_div_factor']) == (25.0, 1e4)
    assert 'onecycle_div_factor' not in optim and 'onecycle_div_factor' not in config
    assert config['model'] == 'seednet' and config['whitening']['layer'] == 'unit1_conv'
    assert optim['lr_mults'] == (('.*_bn/bias', 64.0),) and 'bn_bias_lr_scale' not in config
    assert optim['name'] == 'muon' and optim['muon']['learning_rate'] == 0.6
    assert config['data']['normalize'] == 'mean_std'
    assert compat.upgrade_config({'model': 'airnet', 'stem_whitening': False})[
        'whitening']['layer'] == ''


def test_a_flat_config_reads_as_todays_sections():
    """Every field of the configs before sections moves to one place, and the last flat
    default (tests/fixtures/flat_default_config.json: configs/default.py at commit abd5bdd,
    as a checkpoint saves it) is today's default."""
    moved = list(compat.MOVED_FIELDS.values())
    assert len(moved) == len(set(moved))
    with open(os.path.join(FIXTURES, 'flat_default_config.json')) as f:
        flat_default = json.load(f)
    assert compat.jsonable(compat.upgrade_config(flat_default)) == compat.jsonable(
        default.get_config().to_dict())
    assert compat.moved_key('lookahead.every') == 'average.lookahead.every'
    assert compat.moved_key('onecycle_div_factor') == 'optim.start_div_factor'
    assert compat.moved_key('train.epochs') is None
    assert compat.moved_key('augment.flipp') is None  # a typo in today's section, not a move


def test_a_checkpoint_saved_with_a_flat_config_restores_and_resumes(tmp_path):
    """tests/fixtures/flat_config_run: 2 steps of configs/smoke.py (2 epochs, 1 checkpoint
    kept, epoch ends only) on rgb_folder(data, 4, 2), written by the code before sections
    (commit abd5bdd). Today's code reads its config with sections, evaluates it, and
    resumes it to the same run's end under today's field names."""
    workdir = tmp_path / 'run'
    shutil.copytree(FLAT_RUN, workdir)
    folder = rgb_folder(tmp_path / 'data', train_per_class=4, test_per_class=2)
    config = smoke_config(folder, train=dict(epochs=2),
                          checkpoint=dict(max_to_keep=1, every_steps=-1))
    state, saved, _, step = inference.restore_for_inference(str(workdir), 'latest')
    assert step == 2 and saved.train.epochs == 2 and saved.checkpoint.every_steps == -1
    for section in ('data', 'augment', 'optim', 'average', 'train', 'eval', 'checkpoint'):
        fields = set(saved[section].to_dict()) - {'dataset'}
        assert fields == set(config[section].to_dict()) - {'dataset'}, section
    config.train.epochs = 3
    train.train_and_evaluate(config, str(workdir))
    state, resumed, _, step = inference.restore_for_inference(str(workdir), 'latest')
    assert step == 3 and resumed.train.epochs == 3
    assert json.loads((workdir / 'config.json').read_text())['train']['epochs'] == 3


def test_a_model_field_added_since_matches_checkpoints_saved_without_it():
    """pool_after and group_channels came after the shipped checkpoint: saved without them,
    its network is the one today's defaults build; a value other than the default is not."""
    config = airnet.get_config()
    current = {**checkpointing.architecture(config), 'num_classes': 10}
    saved = json.loads(json.dumps(current))
    del saved['model_args']['pool_after'], saved['model_args']['group_channels']
    assert checkpointing.architecture_mismatch(saved, current) is None
    config.model_args.pool_after = (2, 2, 2)
    changed = {**checkpointing.architecture(config), 'num_classes': 10}
    assert checkpointing.architecture_mismatch(saved, changed) == (
        'config.model_args.pool_after: [1, 1, 1] in the checkpoint, [2, 2, 2] here')

