"""Everything kept for checkpoints written by earlier versions, in one place: their saved
configs are upgraded to today's fields before anything reads them, and a network's
description is compared with the defaults of fields added since filled in."""
from flax_cifar import models

# Renamed model fields: {(model, old name): (new name, new value from the old)}.
RENAMED_MODEL_ARGS = {('airnet', 'dense_first'): ('dense_convs', lambda first: int(bool(first)))}
RENAMED_MODELS = {'seed': 'seednet'}
# Renamed config fields: {old name: new name}.
RENAMED_FIELDS = {'onecycle_div_factor': 'start_div_factor',
                  'onecycle_final_div_factor': 'final_div_factor'}
# The layer each network whitened when config.stem_whitening was True or False.
WHITENED_LAYERS = {'seednet': 'unit1_conv', 'dsresnet': 'stem_conv', 'airnet': 'whiten_conv',
                   'splitnet': 'whiten_conv'}
# Fields added since, with the value that reproduces what the earlier versions did.
ADDED_FIELDS = {'normalize': 'mean_std', 'optimizer': 'sgd', 'ema_warmup': True,
                'schedule_epochs': 0, 'frozen': (), 'lr_mults': (), 'frozen_after_epochs': (),
                'wd_mults': (('.*/kernel', 1.0),),
                'ema_decay': 0.0, 'eval_translate': 0, 'half_precision': False,
                'data_cache_dir': None, 'whitening_eps': 5e-4,
                'lookahead': {'every': 0, 'decay': 0.95, 'power': 3.0, 'start_epoch': 3,
                              'sync_each_epoch': True}}


def upgrade_config(config: dict) -> dict:
    """A saved config (a dict) with today's field names and values."""
    config = {RENAMED_FIELDS.get(name, name): value for name, value in config.items()}
    config['model'] = RENAMED_MODELS.get(config.get('model'), config.get('model'))
    args = dict(config.get('model_args') or {})
    for (model, old), (new, convert) in RENAMED_MODEL_ARGS.items():
        if config['model'] == model and old in args:
            args[new] = convert(args.pop(old))
    config['model_args'] = args
    if isinstance(config.get('stem_whitening'), bool):
        config['stem_whitening'] = (WHITENED_LAYERS.get(config['model'], '')
                                    if config['stem_whitening'] else '')
    if 'bn_bias_lr_scale' in config:
        scale = config.pop('bn_bias_lr_scale')
        config.setdefault('lr_mults', (('.*_bn/bias', scale),) if scale != 1 else ())
    if config.get('muon_learning_rate', 0) > 0:
        config.setdefault('optimizer', 'muon')
    for name, value in ADDED_FIELDS.items():
        config.setdefault(name, value)
    config['lookahead'] = {**ADDED_FIELDS['lookahead'], **config['lookahead']}
    return config


def upgrade_meta(meta: dict) -> dict:
    """A checkpoint's meta item with its config and architecture upgraded alike."""
    meta = dict(meta)
    if 'epoch_sums' in meta:  # the seconds of an epoch in progress came later
        meta['epoch_sums'] = {'seconds': 0.0, **meta['epoch_sums']}
    if 'config' in meta:
        meta['config'] = upgrade_config(meta['config'])
    if 'architecture' in meta:
        architecture = dict(meta['architecture'])
        upgraded = upgrade_config({'stem_whitening': False, **architecture})
        architecture['model'], architecture['model_args'] = (upgraded['model'],
                                                             upgraded['model_args'])
        meta['architecture'] = architecture
    return meta


def architecture_flags(ema: bool, whitened: bool) -> dict:
    """Entries of a checkpoint's architecture for a moving average of the weights and a frozen
    whitened kernel (both change what the optimizer keeps): present only when on, so that the
    checkpoints from before either existed still match."""
    flags = {'ema_decay': 'on'} if ema else {}
    return {**flags, 'stem_whitening': True} if whitened else flags


def jsonable(value):
    """Tuples as lists, dict keys sorted: a config as its JSON reads back."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def complete_architecture(architecture: dict) -> dict:
    """Its model_args with the family's defaults for the fields left out: the network the
    code builds from it, so that a field added with a default matches older checkpoints."""
    defaults = jsonable(models.default_args(architecture.get('model')))
    return {**architecture,
            'model_args': {**defaults, **jsonable(architecture.get('model_args') or {})}}
