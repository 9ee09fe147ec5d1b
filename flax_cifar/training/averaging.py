"""Averages of the weights: a moving average (config.average.ema_decay) or airbench's Lookahead
(config.average.lookahead), kept in state.ema and evaluated instead of the weights."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from flax_cifar.state.train_state import TrainState, average_of, raw_variables


def ema_decay_at(step: jax.Array, decay: float, warmup: bool = True) -> jax.Array:
    """`decay`; with warmup held below (1 + step) / (10 + step), so that early on the average
    follows the weights instead of remembering their random initial values for thousands of
    steps (without: xvel/cifar10-tiniest's plain average from the initial weights)."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


class Lookahead(NamedTuple):
    """airbench's Lookahead (config.average.lookahead): every `every` steps from `start_step`
    on, the slow copy (state.ema) moves towards the weights by 1 - rho and the weights jump back to
    it, rho = decay ** every * (step / schedule_steps) ** power: free early, averaging strongly
    at the end. Every `reset_every` steps (each epoch's end, or the run's: airbench93's) the
    weights take the slow copy (rho = 1)."""
    every: int
    decay: float
    power: float
    start_step: int
    reset_every: int
    schedule_steps: int


class Averaging(NamedTuple):
    """What follows each step (update_average): Lookahead's move, or the moving average's
    (ema_decay > 0 where the state keeps one), or nothing."""
    ema_decay: float = 0.0
    ema_warmup: bool = True
    lookahead: Lookahead | None = None


def averaging_of(average: ml_collections.ConfigDict, steps_per_epoch: int,
                 schedule_steps: int) -> Averaging:
    """The averaging that config.average asks for, its epochs in steps."""
    settings = average.lookahead
    lookahead = Lookahead(
        settings.every, settings.decay, settings.power, settings.start_epoch * steps_per_epoch,
        steps_per_epoch if settings.sync_each_epoch else schedule_steps,
        schedule_steps) if settings.every else None
    return Averaging(average.ema_decay, average.ema_warmup, lookahead)


def lookahead_sync(state: TrainState, lookahead: Lookahead) -> TrainState:
    """The state after `Lookahead`'s move at `state.step`; before start_step the slow copy
    follows the weights."""
    step = state.step
    early = step < lookahead.start_step
    sync = step % lookahead.every == 0
    moves = early | sync | (step % lookahead.reset_every == 0)
    rho = jnp.where(early, 0.0, jnp.where(
        sync, lookahead.decay ** lookahead.every * (step / lookahead.schedule_steps)
        ** lookahead.power, 1.0))
    weights = raw_variables(state)
    slow = jax.tree.map(lambda s, w: jnp.where(moves, w + rho * (s - w), s), state.ema, weights)
    weights = jax.tree.map(lambda s, w: jnp.where(moves & ~early, s, w), slow, weights)
    return state.replace(ema=slow, **weights)


def update_average(state: TrainState, averaging: Averaging) -> TrainState:
    """The state after its step's averaging: Lookahead's move, or the moving average's."""
    if averaging.lookahead is not None:
        return lookahead_sync(state, averaging.lookahead)
    if average_of(state) is not None:
        decay = ema_decay_at(state.step, averaging.ema_decay, averaging.ema_warmup)
        return state.replace(ema=optax.incremental_update(raw_variables(state), state.ema,
                                                          1.0 - decay))
    return state
