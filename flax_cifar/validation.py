"""Config checks that run before anything is compiled, loaded or written.

Each failure is one line naming the field and what it may be.
"""
import os

import jax
import ml_collections
from etils import epath

from flax_cifar import augment, input_pipeline, models, optim, storage, xla_options
from flax_cifar.errors import ConfigError, InputError

# Fields that define the network's parameters: a checkpoint only fits a config that agrees.




def _require(ok: bool, message: str):
    if not ok:
        raise ConfigError(message)


def validate_config(config: ml_collections.ConfigDict, num_devices: int | None = None):
    """Raises ConfigError naming the first bad field of `config`."""
    num_devices = num_devices or jax.device_count()
    _require(config.model in models.MODELS,
             f'config.model={config.model!r} is not a model; choose one of '
             f'{sorted(models.MODELS)}')
    models.create_model(config.model, **config.model_args)  # names unknown model_args
    dropout = config.model_args.get('dropout_rate', 0.0)
    _require(0.0 <= dropout < 1.0,
             f'config.model_args.dropout_rate={dropout} must be in [0, 1)')
    for name in ('batch_size', 'eval_batch_size', 'num_epochs', 'log_every_steps'):
        value = config[name]
        _require(isinstance(value, int) and value > 0,
                 f'config.{name}={value!r} must be a positive integer')
    _require(config.batch_size % num_devices == 0,
             f'config.batch_size={config.batch_size} does not split over {num_devices} '
             f'devices; use a multiple of {num_devices}')
    processes = jax.process_count()
    shards = config.get('data_shards', 0)
    _require(isinstance(shards, int) and shards >= 0 and (shards or processes) % processes == 0,
             f'config.data_shards={shards!r} must be 0 (one per process) or a multiple of the '
             f'{processes} processes')
    _require(config.batch_size % (shards or processes) == 0,
             f'config.batch_size={config.batch_size} does not split over '
             f'config.data_shards={shards or processes} shards; use a multiple of it')
    _require(isinstance(config.num_train_steps, int) and (config.num_train_steps == -1
                                                          or config.num_train_steps > 0),
             f'config.num_train_steps={config.num_train_steps!r} must be -1 (from the '
             f'epochs) or a positive integer')
    _require(config.learning_rate > 0,
             f'config.learning_rate={config.learning_rate} must be positive')
    _require(config.schedule in optim.SCHEDULES,
             f'config.schedule={config.schedule!r} is not a schedule; choose one of '
             f'{sorted(optim.SCHEDULES)}')
    _require(0.0 <= config.warmup_fraction < 1.0,
             f'config.warmup_fraction={config.warmup_fraction} must be in [0, 1)')
    _require(0.0 <= config.label_smoothing < 1.0,
             f'config.label_smoothing={config.label_smoothing} must be in [0, 1)')
    _require(config.weight_decay >= 0, f'config.weight_decay={config.weight_decay} must be >= 0')
    _require(0.0 <= config.momentum < 1.0, f'config.momentum={config.momentum} must be in [0, 1)')
    _require(config.crop_padding >= 0, f'config.crop_padding={config.crop_padding} must be >= 0')
    cutout = config.get('cutout_size', 0)
    _require(isinstance(cutout, int) and 0 <= cutout <= input_pipeline.IMAGE_SHAPE[0],
             f'config.cutout_size={cutout!r} must be an integer from 0 (off) to '
             f'{input_pipeline.IMAGE_SHAPE[0]}')
    translate = config.get('eval_translate', 0)
    _require(isinstance(translate, int) and 0 <= translate < input_pipeline.IMAGE_SHAPE[0] // 2,
             f'config.eval_translate={translate!r} must be an integer from 0 (off) to '
             f'{input_pipeline.IMAGE_SHAPE[0] // 2 - 1} pixels')
    _require(isinstance(config.get('stem_whitening', False), bool),
             f'config.stem_whitening={config.get("stem_whitening")!r} must be True or False')
    steps_per_dispatch = config.get('steps_per_dispatch', 1)
    _require(isinstance(steps_per_dispatch, int) and steps_per_dispatch >= 1
             and config.log_every_steps % steps_per_dispatch == 0,
             f'config.steps_per_dispatch={steps_per_dispatch!r} must be a positive integer that '
             f'divides config.log_every_steps={config.log_every_steps} (progress is read between calls)')
    ema_decay = config.get('ema_decay', 0.0)
    _require(0.0 <= ema_decay < 1.0, f'config.ema_decay={ema_decay} must be in [0, 1)')
    lookahead = config.get('lookahead') or {}
    every = lookahead.get('every', 0)
    _require(isinstance(every, int) and every >= 0,
             f'config.lookahead.every={every!r} must be 0 (off) or a positive integer')
    if every:
        _require(ema_decay == 0, f'config.ema_decay={ema_decay} and config.lookahead.every='
                 f'{every} both keep a copy of the weights; turn one off')
        _require(0.0 <= lookahead.decay <= 1.0,
                 f'config.lookahead.decay={lookahead.decay} must be in [0, 1]')
        _require(lookahead.start_epoch >= 0,
                 f'config.lookahead.start_epoch={lookahead.start_epoch} must be >= 0')
    pad_mode = config.get('crop_pad_mode', 'constant')
    _require(pad_mode in augment.PAD_MODES,
             f'config.crop_pad_mode={pad_mode!r} must be one of {augment.PAD_MODES}')
    _require(pad_mode == 'constant' or config.crop_padding < input_pipeline.IMAGE_SHAPE[0],
             f'config.crop_padding={config.crop_padding} must be below the image size to '
             f'reflect the borders')
    bias_scale = config.get('bn_bias_lr_scale', 1.0)
    _require(bias_scale > 0, f'config.bn_bias_lr_scale={bias_scale} must be positive')
    muon_rate = config.get('muon_learning_rate', 0.0)
    _require(isinstance(muon_rate, (int, float)) and muon_rate >= 0,
             f'config.muon_learning_rate={muon_rate!r} must be 0 (off) or positive')
    _require(0 <= config.get('muon_momentum', 0.6) < 1,
             f"config.muon_momentum={config.get('muon_momentum')} must be in [0, 1)")
    _require(config.checkpoint_every_steps == -1 or config.checkpoint_every_steps > 0,
             f'config.checkpoint_every_steps={config.checkpoint_every_steps} must be -1 (epoch '
             f'ends only) or positive')
    _require(config.max_checkpoints_to_keep > 0,
             f'config.max_checkpoints_to_keep={config.max_checkpoints_to_keep} must be positive')
    refusal = xla_options.rejected(xla_options.training_options(config))
    _require(refusal is None,
             f'config.cpu_ynnpack_convolutions=False: jax {jax.__version__} refuses the XLA '
             f'option it sets ({refusal}); set it to True')
    dataset = config.dataset
    _require(isinstance(dataset, str) and dataset != '',
             f'config.dataset={dataset!r} must be a TFDS name, folder:/path or arrays:/path')
    for prefix in (input_pipeline.FOLDER_PREFIX, input_pipeline.ARRAYS_PREFIX):
        if dataset.startswith(prefix):
            root = dataset[len(prefix):]
            root = root if storage.is_remote(root) else os.path.expanduser(root)
            _require(epath.Path(root).is_dir(), f'config.dataset: folder {root!r} does not exist')


def uses_ema(config: ml_collections.ConfigDict) -> bool:
    """Whether the run keeps a second copy of its weights: a moving average
    (config.ema_decay > 0) or Lookahead's slow weights (config.lookahead.every > 0)."""
    lookahead = config.get('lookahead') or {}
    return config.get('ema_decay', 0.0) > 0 or lookahead.get('every', 0) > 0
