"""The objective and the optimizer: smoothed cross-entropy, an optimizer and a learning-rate
schedule chosen by name (OPTIMIZERS, SCHEDULES), and parameter rules from the config.

Rules are regexes over whole parameter paths such as 'block1_conv1_bn/bias' (full matches:
'block1_conv1' is not a rule for 'block1_conv10', '.*_bn/bias' is one for every BatchNorm
bias). `config.optim.frozen` parameters never change, `lr_mults` and `wd_mults`
((pattern, multiplier) pairs, the first match wins) scale a parameter's learning rate and
weight decay. A rule that matches no parameter stops the run at start (`check_rules`), so a
renamed layer cannot silently escape its rule.
"""
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import traverse_util

from flax_cifar.errors import ConfigError


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


# Schedules: (config.optim, schedule steps) -> optax schedule peaking at its learning_rate.

def _onecycle(optim, schedule_steps):
    return optax.cosine_onecycle_schedule(
        transition_steps=schedule_steps, peak_value=optim.learning_rate,
        pct_start=optim.warmup_fraction, div_factor=optim.start_div_factor,
        final_div_factor=optim.final_div_factor)


def _warmup_cosine(optim, schedule_steps):
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=optim.learning_rate,
        warmup_steps=int(optim.warmup_fraction * schedule_steps), decay_steps=schedule_steps)


def _constant(optim, schedule_steps):
    del schedule_steps
    return optax.constant_schedule(optim.learning_rate)


def _triangle(optim, schedule_steps):
    """airbench's: linear from learning_rate / start_div_factor up to learning_rate at
    warmup_fraction of the steps, then linear down to that start / final_div_factor."""
    start = optim.learning_rate / optim.start_div_factor
    warmup = max(1, int(optim.warmup_fraction * schedule_steps))
    return optax.join_schedules([
        optax.linear_schedule(start, optim.learning_rate, warmup),
        optax.linear_schedule(optim.learning_rate, start / optim.final_div_factor,
                              max(1, schedule_steps - warmup))], [warmup])


SCHEDULES = {'onecycle': _onecycle, 'warmup_cosine': _warmup_cosine, 'constant': _constant,
             'triangle': _triangle}


def create_learning_rate_fn(optim: ml_collections.ConfigDict,
                            schedule_steps: int) -> optax.Schedule:
    """The per-step learning rate of config.optim (`optim`); its learning_rate is the peak."""
    return SCHEDULES[optim.schedule](optim, schedule_steps)


# Parameter rules.

def path_of(path: tuple) -> str:
    return '/'.join(str(p) for p in path)


def _matches(pattern: str, path: tuple) -> bool:
    return re.fullmatch(pattern, path_of(path)) is not None


def _first_match(pairs, path: tuple, default: float) -> float:
    return next((float(value) for pattern, value in pairs if _matches(pattern, path)), default)


def frozen_patterns(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """config.optim.frozen, and the whitened layer's kernel (config.whitening.layer), which its
    patch statistics set and nothing trains."""
    whitened = (f'^{re.escape(config.whitening.layer)}/kernel$',) if config.whitening.layer else ()
    return tuple(config.optim.frozen) + whitened


def frozen_test(config: ml_collections.ConfigDict) -> Callable[[tuple], bool]:
    """Whether a parameter path is frozen (frozen_patterns)."""
    frozen = frozen_patterns(config)
    return lambda path: any(_matches(pattern, path) for pattern in frozen)


def check_rules(config: ml_collections.ConfigDict, params) -> None:
    """ConfigError naming the first rule that matches none of `params` (shapes suffice)."""
    paths = list(traverse_util.flatten_dict(params))
    if config.whitening.layer and (config.whitening.layer, 'kernel') not in paths:
        raise ConfigError(f'config.whitening.layer={config.whitening.layer!r}: the network has '
                          f'no such layer with a kernel (its first layers: '
                          f'{sorted({p[0] for p in paths})[:6]})')
    rules = [('config.optim.frozen', pattern) for pattern in config.optim.frozen] + [
        (f'config.optim.{name}', pattern)
        for name in ('lr_mults', 'wd_mults', 'frozen_after_epochs')
        for pattern, _ in config.optim[name]]
    for field, pattern in rules:
        try:
            matched = any(_matches(pattern, p) for p in paths)
        except re.error as e:
            raise ConfigError(f'{field}: {pattern!r} is not a regular expression ({e})') from None
        if not matched:
            raise ConfigError(f'{field}: {pattern!r} matches no parameter of '
                              f'config.model={config.model!r} (a pattern matches whole paths, '
                              f'which look like {path_of(paths[0])!r})')


def _tree(fn: Callable[[tuple, jax.Array], object]):
    """A mask or label function for optax: fn(path, param) at every parameter."""
    return lambda params: traverse_util.path_aware_map(fn, params)


def _scaled_by(pairs, default: float, transform: Callable[[float], optax.GradientTransformation]):
    """`transform(m)` on the parameters whose first matching pair gives multiplier m, for
    each m other than `default`; identity where there is none."""
    multipliers = sorted({float(m) for _, m in pairs} - {default})
    if not multipliers:
        return optax.identity()
    parts = [optax.masked(transform(m), _tree(
        lambda path, _, m=m: _first_match(pairs, path, default) == m)) for m in multipliers]
    return parts[0] if len(parts) == 1 else optax.chain(*parts)


def _weight_decay(optim):
    """weight_decay times each parameter's wd_mults multiplier (0 unmatched)."""
    return _scaled_by(optim.wd_mults, 0.0,
                      lambda m: optax.add_decayed_weights(optim.weight_decay * m))


def _lr_mults(optim):
    return _scaled_by(optim.lr_mults, 1.0, optax.scale)


# Optimizers: (config.optim, learning-rate schedule) -> a transformation of the trained
# parameters.

def sgd(optim, learning_rate_fn):
    """SGD with (Nesterov) momentum and L2 weight decay. A learning-rate multiplier scales
    the gradient, not the decay (airbench's bias_scaler)."""
    return optax.chain(_lr_mults(optim), _weight_decay(optim),
                       optax.sgd(learning_rate_fn, momentum=optim.momentum,
                                 nesterov=optim.nesterov))


def adamw(optim, learning_rate_fn):
    """AdamW as PyTorch has it: decay decoupled from the gradient, lr * wd * p a step."""
    return optax.chain(
        optax.scale_by_adam(b1=optim.adam_b1, b2=optim.adam_b2,
                            eps=optim.adam_eps),
        _weight_decay(optim), _lr_mults(optim),
        optax.scale_by_learning_rate(learning_rate_fn))


def is_matrix_kernel(path: tuple, param) -> bool:
    """A dense or pointwise conv kernel (HWIO with I > 1): what Muon orthogonalizes. Depthwise
    kernels (I = 1), the classifier and the normalization parameters keep SGD, as in airbench."""
    return path[-1] == 'kernel' and param.ndim == 4 and param.shape[2] > 1


def normalize_weights() -> optax.GradientTransformation:
    """Each update sets its kernel's norm to sqrt(output channels) first (airbench94_muon:
    a filter's scale carries nothing under the BatchNorm after it)."""
    def update(updates, state, params):
        def renormalized(u, p):
            target = optax.projections.projection_l2_sphere(p, jnp.sqrt(p.shape[-1]))
            return u + target - p
        return jax.tree.map(renormalized, updates, params), state
    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def muon_for_matrices(optim, learning_rate_fn):
    """optax's Muon at config.optim.muon.learning_rate, on the schedule's shape (each output
    filter a row of an O x HWI matrix), weight decay by wd_mults; with
    muon.normalize_weights, airbench94_muon's renormalized kernels."""
    peak = optim.learning_rate
    return optax.chain(
        optax.contrib.scale_by_muon(
            beta=optim.muon.momentum, nesterov=True, ns_steps=optim.muon.ns_steps,
            weight_dimension_numbers=lambda tree: jax.tree.map(
                lambda _: optax.contrib.MuonDimensionNumbers((0, 1, 2), 3), tree)),
        _weight_decay(optim),
        optax.scale_by_learning_rate(
            lambda step: optim.muon.learning_rate * learning_rate_fn(step) / peak),
        *((normalize_weights(),) if optim.muon.normalize_weights else ()))


def muon(optim, learning_rate_fn) -> dict:
    """Muon for the dense and pointwise conv kernels (is_matrix_kernel), SGD for the rest."""
    return {'trained': sgd(optim, learning_rate_fn),
            'muon': muon_for_matrices(optim, learning_rate_fn)}


# config.optim.name: (config.optim, schedule) -> {group: transformation}. 'trained' takes every
# trained parameter that no other group claims. The names are those of the optimizer state's
# groups, which checkpoints hold.
OPTIMIZERS = {'sgd': lambda optim, schedule: {'trained': sgd(optim, schedule)},
              'adamw': lambda optim, schedule: {'trained': adamw(optim, schedule)},
              'muon': muon}


def freeze_after(optim, steps_per_epoch: int | None):
    """Zeroes the updates of the parameters config.optim.frozen_after_epochs names, from their
    epoch on (airbench93 trains its whitening bias for 3 epochs)."""
    if not optim.frozen_after_epochs:
        return optax.identity()
    if steps_per_epoch is None:
        raise ValueError('config.optim.frozen_after_epochs needs the steps per epoch')
    parts = [optax.masked(
        optax.scale_by_schedule(
            lambda count, last=epoch * steps_per_epoch: jnp.where(count < last, 1.0, 0.0)),
        _tree(lambda path, _, pattern=pattern: _matches(pattern, path)))
        for pattern, epoch in optim.frozen_after_epochs]
    return optax.chain(*parts)


def create_optimizer(config: ml_collections.ConfigDict, learning_rate_fn: optax.Schedule,
                     steps_per_epoch: int | None = None) -> optax.GradientTransformation:
    """config.optim.name's groups for the trained parameters (OPTIMIZERS); none for the frozen
    (no update, decay or momentum)."""
    groups = OPTIMIZERS[config.optim.name](config.optim, learning_rate_fn)
    if config.optim.frozen_after_epochs:
        groups['trained'] = optax.chain(groups['trained'],
                                        freeze_after(config.optim, steps_per_epoch))
    if not frozen_patterns(config) and len(groups) == 1:
        return groups['trained']
    is_frozen = frozen_test(config)

    def group(path, param):
        if is_frozen(path):
            return 'frozen'
        return 'muon' if 'muon' in groups and is_matrix_kernel(path, param) else 'trained'

    return optax.multi_transform({**groups, 'frozen': optax.set_to_zero()}, _tree(group))
