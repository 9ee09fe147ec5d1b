"""The train state (what a checkpoint holds) and how a config builds it."""
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from flax_cifar import models
from flax_cifar.data import types


class TrainState(train_state.TrainState):
    batch_stats: Any


class EmaTrainState(TrainState):
    """With a moving average of {'params', 'batch_stats'}: the weights that get evaluated.

    A class of its own, not an optional field, so that runs without the average save and
    restore exactly the checkpoints they always did.
    """
    ema: Any


def average_of(state: TrainState):
    """The weight average the state keeps (a moving average or Lookahead's slow copy, both in
    the field `ema`, its name in checkpoints), or None."""
    return state.ema if isinstance(state, EmaTrainState) else None


def raw_variables(state: TrainState) -> dict:
    return {'params': state.params, 'batch_stats': state.batch_stats}


def inference_variables(state: TrainState, ema: bool = True) -> dict:
    """The moving average of the weights where the state has one (unless ema=False), else
    the weights themselves."""
    averaged = average_of(state) if ema else None
    return raw_variables(state) if averaged is None else averaged


def model_of(config: ml_collections.ConfigDict, num_classes: int = 10):
    """config.model with config.model_args, in bfloat16 activations with config.half_precision."""
    dtype = jnp.bfloat16 if config.half_precision else jnp.float32
    return models.create_model(config.model, num_classes=num_classes, dtype=dtype,
                               **config.model_args)


def create_train_state(rng: jax.Array, model, tx: optax.GradientTransformation,
                       image_shape=types.IMAGE_SHAPE, ema: bool = False) -> TrainState:
    # One jitted program: run op by op, the parameter and optimizer-state initializers
    # compile dozens of tiny programs one at a time (same values, seconds more at start).
    @jax.jit
    def create(rng):
        variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
        variables = {'params': variables['params'],
                     'batch_stats': variables.get('batch_stats', {})}
        if ema:
            return EmaTrainState.create(apply_fn=model.apply, tx=tx, **variables, ema=variables)
        return TrainState.create(apply_fn=model.apply, tx=tx, **variables)
    return create(rng)


def keeps_average(average: ml_collections.ConfigDict) -> bool:
    """Whether the run keeps a second copy of its weights (config.average): a moving average
    (ema_decay > 0) or Lookahead's slow weights (lookahead.every > 0)."""
    return average.ema_decay > 0 or average.lookahead.every > 0
