"""The objective and the optimizer: smoothed cross-entropy, SGD with momentum,
decoupled-from-BN weight decay, a learning-rate schedule."""
from collections.abc import Collection

import jax
import ml_collections
import optax
from flax import traverse_util

from flax_cifar.errors import InputError


def _onecycle(config, total_steps):
    return optax.cosine_onecycle_schedule(
        transition_steps=total_steps, peak_value=config.learning_rate,
        pct_start=config.warmup_fraction, div_factor=config.onecycle_div_factor,
        final_div_factor=config.onecycle_final_div_factor)


def _warmup_cosine(config, total_steps):
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.learning_rate,
        warmup_steps=int(config.warmup_fraction * total_steps), decay_steps=total_steps)


def _constant(config, total_steps):
    del total_steps
    return optax.constant_schedule(config.learning_rate)


def _triangle(config, total_steps):
    """airbench's: linear from learning_rate / onecycle_div_factor up to learning_rate at
    warmup_fraction of the steps, then linear down to that start / onecycle_final_div_factor."""
    start = config.learning_rate / config.onecycle_div_factor
    warmup = max(1, int(config.warmup_fraction * total_steps))
    return optax.join_schedules([
        optax.linear_schedule(start, config.learning_rate, warmup),
        optax.linear_schedule(config.learning_rate, start / config.onecycle_final_div_factor,
                              max(1, total_steps - warmup))], [warmup])


SCHEDULES = {'onecycle': _onecycle, 'warmup_cosine': _warmup_cosine, 'constant': _constant,
             'triangle': _triangle}


def create_learning_rate_fn(config: ml_collections.ConfigDict,
                            total_steps: int) -> optax.Schedule:
    """The per-step learning rate; `config.learning_rate` is its peak."""
    if config.schedule not in SCHEDULES:
        raise InputError(f'config.schedule={config.schedule!r} is not a schedule; '
                         f'choose one of {sorted(SCHEDULES)}')
    return SCHEDULES[config.schedule](config, total_steps)


def is_norm_bias(path: tuple) -> bool:
    """Whether a parameter path names a BatchNorm layer's bias (its module's name ends _bn)."""
    return len(path) >= 2 and path[-1] == 'bias' and str(path[-2]).endswith('_bn')


def scale_norm_biases(factor: float) -> optax.GradientTransformation:
    """Multiplies the BatchNorm biases' gradients by `factor`: their learning rate, not their
    weight decay (airbench's bias_scaler: shifts learn fast while the kernels, normalized by
    the BN after them, move slowly)."""
    if factor == 1.0:
        return optax.identity()
    mask = lambda params: traverse_util.path_aware_map(lambda path, _: is_norm_bias(path),
                                                         params)
    return optax.masked(optax.scale(factor), mask)


def is_matrix_kernel(path: tuple, param) -> bool:
    """A dense or pointwise conv kernel (HWIO with I > 1): what Muon orthogonalizes. Depthwise
    kernels (I = 1), the classifier and the BatchNorm parameters keep SGD, as in airbench."""
    return path[-1] == 'kernel' and param.ndim == 4 and param.shape[2] > 1


def muon(config: ml_collections.ConfigDict,
         learning_rate_fn: optax.Schedule) -> optax.GradientTransformation:
    """optax's Muon on HWIO kernels (each output filter a row of an O x HWI matrix), at
    config.muon_learning_rate scaled by the run's schedule, with the same weight decay."""
    peak = config.learning_rate
    return optax.chain(
        optax.contrib.scale_by_muon(
            beta=config.get('muon_momentum', 0.6), nesterov=True,
            weight_dimension_numbers=lambda tree: jax.tree.map(
                lambda _: optax.contrib.MuonDimensionNumbers((0, 1, 2), 3), tree)),
        optax.add_decayed_weights(config.weight_decay),
        optax.scale_by_learning_rate(
            lambda step: config.muon_learning_rate * learning_rate_fn(step) / peak))


def create_optimizer(config: ml_collections.ConfigDict, learning_rate_fn: optax.Schedule,
                     frozen: Collection[str] = ()) -> optax.GradientTransformation:
    """SGD with momentum; weight decay on conv and dense kernels only, not BN or biases.
    With config.muon_learning_rate > 0, Muon for the dense and pointwise conv kernels.

    frozen: layers (top-level names) whose parameters never change: no update, no decay, no
    momentum.
    """
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
    sgd = optax.chain(
        scale_norm_biases(config.get('bn_bias_lr_scale', 1.0)),
        optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
        optax.sgd(learning_rate_fn, momentum=config.momentum, nesterov=config.nesterov))
    use_muon = config.get('muon_learning_rate', 0.0) > 0
    if not frozen and not use_muon:
        return sgd

    def group(path, param):
        if path[0] in frozen:
            return 'frozen'
        return 'muon' if use_muon and is_matrix_kernel(path, param) else 'trained'

    # 'trained' (SGD) keeps the name earlier checkpoints' optimizer state has.
    transforms = {'trained': sgd, 'frozen': optax.set_to_zero()}
    if use_muon:
        transforms['muon'] = muon(config, learning_rate_fn)
    return optax.multi_transform(
        transforms, lambda params: traverse_util.path_aware_map(group, params))


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)
