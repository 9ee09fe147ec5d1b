"""Config checks, all here, run before anything is loaded, compiled or written: every field
by a rule of the table FIELDS, then the combinations of fields. Each failure is one line
naming the field and what it may be.
"""
import math

import jax
import jax.numpy as jnp
import ml_collections
from etils import epath
from flax import traverse_util

from flax_cifar import models, xla_options
from flax_cifar.data import augment, types
from flax_cifar.errors import ConfigError
from flax_cifar.state import optim
from flax_cifar.workdir import compat


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive_int(v):
    return _is_int(v) and v > 0, 'must be a positive integer'


def boolean(v):
    return isinstance(v, bool), 'must be True or False'


def number(low=-math.inf, high=math.inf, high_open=False, low_open=False):
    def check(v):
        ok = _is_number(v) and (v > low if low_open else v >= low) and (
            v < high if high_open else v <= high)
        return ok, (f'must be a number in {"(" if low_open else "["}{low}, {high}'
                    f'{")" if high_open else "]"}')
    return check


def integer(low, high=math.inf):
    return lambda v: (_is_int(v) and low <= v <= high, f'must be an integer from {low} to {high}')


def one_of(choices):
    return lambda v: (v in choices, f'must be one of {sorted(choices)}')


def optional_text(v):
    return v is None or (isinstance(v, str) and v != ''), 'must be None or a non-empty path'


def text(v):
    return isinstance(v, str), 'must be a string'


def pairs(v):
    ok = isinstance(v, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and _is_number(p[1])
        and p[1] >= 0 for p in v)
    return ok, 'must be a tuple of (regex, multiplier >= 0) pairs'


def epoch_pairs(v):
    ok = isinstance(v, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and _is_int(p[1])
        and p[1] >= 0 for p in v)
    return ok, 'must be a tuple of (regex, epoch >= 0) pairs'


def patterns(v):
    return (isinstance(v, tuple) and all(isinstance(p, str) for p in v),
            'must be a tuple of regexes')


def factor_range(v):
    return (isinstance(v, tuple) and len(v) == 2 and all(_is_number(x) and x >= 0 for x in v)
            and v[0] <= v[1]), 'must be (low, high) with 0 <= low <= high'


def jiggle(v):
    return (isinstance(v, tuple) and len(v) == 4 and all(_is_number(x) and x >= 0 for x in v)
            and v[0] <= 1 and v[1] <= 1 and v[2] <= 1 and v[3] <= 0.5), (
        'must be (brightness, contrast, saturation, hue), each >= 0, at most 1, hue at most 0.5')


def coordinator(v):
    ok = v is None or (isinstance(v, str) and v.rpartition(':')[2].isdigit()
                       and v.rpartition(':')[0] != '')
    return ok, "must be None or 'host:port'"


PIXELS = types.IMAGE_SHAPE[0]
PROBABILITY = number(0.0, 1.0)
FRACTION = number(0.0, 1.0, high_open=True)
# Every field a config may hold, with its rule; model_args are the model class's fields.
FIELDS = {
    'seed': lambda v: (_is_int(v), 'must be an integer'),
    'model': one_of(models.MODELS), 'model_args': None, 'half_precision': boolean,
    'data.dataset': lambda v: (isinstance(v, str) and v != '',
                               'must be a TFDS name, folder:/path or arrays:/path'),
    'data.tfds_data_dir': optional_text,
    'data.cache_dir': lambda v: (v is None or isinstance(v, str), 'must be None or a path'),
    'data.normalize': one_of(types.NORMALIZATIONS), 'data.shards': integer(0),
    'augment.enabled': boolean, 'augment.crop_padding': integer(0, PIXELS - 1),
    'augment.crop_pad_mode': one_of(augment.PAD_MODES), 'augment.flip': boolean,
    'augment.alternating_flip': boolean, 'augment.rotate_degrees': number(0.0, 180.0),
    'augment.rotate_p': PROBABILITY, 'augment.sharpen_p': PROBABILITY,
    'augment.sharpen_factors': factor_range, 'augment.color_jiggle_p': PROBABILITY,
    'augment.color_jiggle': jiggle, 'augment.mixup_max': FRACTION,
    'augment.mixup_ramp': PROBABILITY, 'augment.cutout_size': integer(0, PIXELS),
    'whitening.layer': text, 'whitening.eps': number(0.0, low_open=True),
    'optim.name': one_of(optim.OPTIMIZERS), 'optim.learning_rate': number(0.0, low_open=True),
    'optim.schedule': one_of(optim.SCHEDULES), 'optim.warmup_fraction': FRACTION,
    'optim.start_div_factor': number(0.0, low_open=True),
    'optim.final_div_factor': number(0.0, low_open=True), 'optim.momentum': FRACTION,
    'optim.nesterov': boolean, 'optim.adam_b1': FRACTION, 'optim.adam_b2': FRACTION,
    'optim.adam_eps': number(0.0, low_open=True), 'optim.weight_decay': number(0.0),
    'optim.frozen': patterns, 'optim.lr_mults': pairs, 'optim.wd_mults': pairs,
    'optim.frozen_after_epochs': epoch_pairs,
    'optim.muon.learning_rate': number(0.0), 'optim.muon.momentum': FRACTION,
    'optim.muon.ns_steps': positive_int, 'optim.muon.normalize_weights': boolean,
    'average.ema_decay': FRACTION, 'average.ema_warmup': boolean,
    'average.lookahead.every': integer(0), 'average.lookahead.decay': PROBABILITY,
    'average.lookahead.power': number(0.0), 'average.lookahead.start_epoch': integer(0),
    'average.lookahead.sync_each_epoch': boolean,
    'train.batch_size': positive_int, 'train.epochs': positive_int,
    'train.steps': lambda v: (_is_int(v) and (v == -1 or v > 0),
                              'must be -1 (from the epochs) or a positive integer'),
    'train.schedule_epochs': integer(0), 'train.label_smoothing': FRACTION,
    'train.log_every_steps': positive_int, 'train.steps_per_dispatch': positive_int,
    'train.cpu_ynnpack_convolutions': boolean,
    'eval.batch_size': positive_int, 'eval.flip': boolean,
    'eval.translate': integer(0, PIXELS // 2 - 1),
    'checkpoint.every_steps': lambda v: (_is_int(v) and (v == -1 or v > 0),
                                         'must be -1 (epoch ends only) or a positive integer'),
    'checkpoint.max_to_keep': positive_int,
    'distributed.coordinator_address': coordinator,
    'distributed.num_processes': positive_int, 'distributed.process_id': integer(0),
}


def _require(ok: bool, message: str):
    if not ok:
        raise ConfigError(message)


def check_fields(config: ml_collections.ConfigDict) -> None:
    """Every field by its rule; a field flax_cifar does not read, or one missing, is named."""
    flat = traverse_util.flatten_dict(  # 'train.epochs'; model_args one field
        config.to_dict(), sep='.', is_leaf=lambda path, _: path == ('model_args',))
    unknown = next((name for name in flat if name not in FIELDS), None)  # the config's first
    if unknown:
        moved = compat.moved_key(unknown)
        raise ConfigError(f'config.{unknown} is now config.{moved}' if moved else
                          f'config.{unknown} is not a field flax_cifar reads (a typo? the '
                          f'fields: configs/default.py)')
    for name, rule in FIELDS.items():
        _require(name in flat, f'config.{name} is missing (configs/default.py defines it)')
        if rule is not None:
            ok, what = rule(flat[name])
            _require(ok, f'config.{name}={flat[name]!r} {what}')


def validate_config(config: ml_collections.ConfigDict, num_devices: int | None = None):
    """Raises ConfigError naming the first bad field, or combination, of `config`."""
    check_fields(config)
    num_devices = num_devices or jax.device_count()
    model = models.create_model(config.model, **config.model_args)  # names unknown model_args
    dropout = config.model_args.get('dropout_rate', 0.0)
    _require(0.0 <= dropout < 1.0, f'config.model_args.dropout_rate={dropout} must be in [0, 1)')
    processes = jax.process_count()
    shards = config.data.shards or processes
    _require(config.train.batch_size % num_devices == 0,
             f'config.train.batch_size={config.train.batch_size} does not split over {num_devices} '
             f'devices; use a multiple of {num_devices}')
    _require(shards % processes == 0,
             f'config.data.shards={config.data.shards} must be 0 (one per process) or a '
             f'multiple of the {processes} processes')
    _require(config.train.batch_size % shards == 0,
             f'config.train.batch_size={config.train.batch_size} does not split over '
             f'config.data.shards={shards} shards; use a multiple of it')
    _require(config.train.log_every_steps % config.train.steps_per_dispatch == 0,
             f'config.train.steps_per_dispatch={config.train.steps_per_dispatch} must divide '
             f'config.train.log_every_steps={config.train.log_every_steps} (progress is read '
             f'between calls)')
    _require(config.train.schedule_epochs == 0 or
             config.train.schedule_epochs >= config.train.epochs,
             f'config.train.schedule_epochs={config.train.schedule_epochs} must be 0 or at least '
             f'config.train.epochs={config.train.epochs}')
    _require(not (config.average.lookahead.every and config.average.ema_decay),
             f'config.average.ema_decay={config.average.ema_decay} and '
             f'config.average.lookahead.every={config.average.lookahead.every} both keep a copy '
             f'of the weights; turn one off')
    _require((config.optim.name == 'muon') == (config.optim.muon.learning_rate > 0),
             f"config.optim.muon.learning_rate={config.optim.muon.learning_rate} is Muon's rate: "
             f"positive with config.optim.name='muon' and 0 otherwise (config.optim.name="
             f"{config.optim.name!r})")
    _require(config.distributed.process_id < config.distributed.num_processes,
             f'config.distributed.process_id={config.distributed.process_id} must be below '
             f'config.distributed.num_processes={config.distributed.num_processes}')
    refusal = xla_options.rejected(xla_options.training_options(config.train))
    _require(refusal is None,
             f'config.train.cpu_ynnpack_convolutions=False: jax {jax.__version__} refuses the XLA '
             f'option it sets ({refusal}); set it to True')
    for prefix in (types.FOLDER_PREFIX, types.ARRAYS_PREFIX):
        root = types.dataset_path(config.data.dataset, prefix)
        _require(root is None or epath.Path(root).is_dir(),
                 f'config.data.dataset: folder {root!r} does not exist')
    params = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                               jnp.zeros((1, *types.IMAGE_SHAPE))))['params']
    optim.check_rules(config, params)

