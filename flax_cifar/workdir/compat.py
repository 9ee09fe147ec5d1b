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


# Fields moved into sections (config.data, config.train, ...): {flat name: dotted path}.
MOVED_FIELDS = {
    'dataset': 'data.dataset', 'data_dir': 'data.tfds_data_dir',
    'data_cache_dir': 'data.cache_dir', 'normalize': 'data.normalize',
    'data_shards': 'data.shards',
    'augment': 'augment.enabled', **{name: f'augment.{name}' for name in (
        'crop_padding', 'crop_pad_mode', 'flip', 'alternating_flip', 'rotate_degrees',
        'rotate_p', 'sharpen_p', 'sharpen_factors', 'color_jiggle_p', 'color_jiggle',
        'mixup_max', 'mixup_ramp', 'cutout_size')},
    'stem_whitening': 'whitening.layer', 'whitening_eps': 'whitening.eps',
    'optimizer': 'optim.name', **{name: f'optim.{name}' for name in (
        'learning_rate', 'schedule', 'warmup_fraction', 'start_div_factor', 'final_div_factor',
        'momentum', 'nesterov', 'adam_b1', 'adam_b2', 'adam_eps', 'weight_decay', 'frozen',
        'lr_mults', 'wd_mults', 'frozen_after_epochs')},
    **{f'muon_{name}': f'optim.muon.{name}' for name in (
        'learning_rate', 'momentum', 'ns_steps', 'normalize_weights')},
    'ema_decay': 'average.ema_decay', 'ema_warmup': 'average.ema_warmup',
    'lookahead': 'average.lookahead',
    'batch_size': 'train.batch_size', 'num_epochs': 'train.epochs',
    'num_train_steps': 'train.steps', 'schedule_epochs': 'train.schedule_epochs',
    'label_smoothing': 'train.label_smoothing', 'log_every_steps': 'train.log_every_steps',
    'steps_per_dispatch': 'train.steps_per_dispatch',
    'cpu_ynnpack_convolutions': 'train.cpu_ynnpack_convolutions',
    'eval_batch_size': 'eval.batch_size', 'eval_flip': 'eval.flip',
    'eval_translate': 'eval.translate',
    'checkpoint_every_steps': 'checkpoint.every_steps',
    'max_checkpoints_to_keep': 'checkpoint.max_to_keep',
}


def moved_key(key: str) -> str | None:
    """Today's dotted path of a flat config key ('num_epochs', 'lookahead.every'), or None
    (also for today's keys: 'augment.flip' is not the flat bool 'augment' with a part)."""
    first, dot, rest = RENAMED_FIELDS.get(key, key).partition('.')
    if first not in MOVED_FIELDS or (dot and first != 'lookahead'):  # the one flat section
        return None
    return MOVED_FIELDS[first] + dot + rest


def upgrade_config(config: dict) -> dict:
    """A saved config (a dict) with today's field names, values and sections."""
    if 'train' in config:  # saved with sections: only the model may have been renamed since
        return {**config, **upgrade_model(config)}
    config = {RENAMED_FIELDS.get(name, name): value for name, value in config.items()}
    config.update(upgrade_model(config))
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
    return _into_sections(config)


def upgrade_model(config: dict) -> dict:
    """{'model': ..., 'model_args': ...} of a saved config, renamed fields and models upgraded."""
    model = RENAMED_MODELS.get(config.get('model'), config.get('model'))
    args = dict(config.get('model_args') or {})
    for (family, old), (new, convert) in RENAMED_MODEL_ARGS.items():
        if model == family and old in args:
            args[new] = convert(args.pop(old))
    return {'model': model, 'model_args': args}


def _into_sections(config: dict) -> dict:
    """A flat config's fields moved to their sections; fields of no section stay on top."""
    sectioned = {}
    for name, value in config.items():
        path = MOVED_FIELDS.get(name, name).split('.')
        node = sectioned
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return sectioned


def upgrade_meta(meta: dict) -> dict:
    """A checkpoint's meta item with its config and architecture upgraded alike."""
    meta = dict(meta)
    if 'epoch_sums' in meta:  # the seconds of an epoch in progress came later
        meta['epoch_sums'] = {'seconds': 0.0, **meta['epoch_sums']}
    if 'config' in meta:
        meta['config'] = upgrade_config(meta['config'])
    if 'architecture' in meta:
        architecture = dict(meta['architecture'])
        architecture.update(upgrade_model(architecture))
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
