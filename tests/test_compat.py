"""Checkpoints written by earlier versions: their saved configs read as today's (compat.py)."""
import json

from configs import airnet
from flax_cifar.workdir import checkpointing, compat


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
    assert (config['start_div_factor'], config['final_div_factor']) == (25.0, 1e4)
    assert 'onecycle_div_factor' not in config
    assert config['model'] == 'seednet' and config['stem_whitening'] == 'unit1_conv'
    assert config['lr_mults'] == (('.*_bn/bias', 64.0),) and 'bn_bias_lr_scale' not in config
    assert config['optimizer'] == 'muon' and config['normalize'] == 'mean_std'
    assert compat.upgrade_config({'model': 'airnet', 'stem_whitening': False})[
        'stem_whitening'] == ''


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
