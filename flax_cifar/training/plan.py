"""Where a run's steps go, decided once: how many make an epoch, where the run stops, what the
schedule spans, and which steps end an epoch, checkpoint, report, or start a many-step
dispatch. The loop (train.py) asks; nothing else decides."""
from typing import NamedTuple

import ml_collections

from flax_cifar.errors import ConfigError


class Plan(NamedTuple):
    steps_per_epoch: int
    stop_step: int           # where this run stops (train.steps or train.epochs)
    schedule_steps: int      # what the learning-rate schedule and Lookahead span
    steps_per_dispatch: int  # steps unrolled in one call where they fit (dispatch_size)
    log_every: int           # report every this many steps of an epoch
    checkpoint_every: int    # checkpoint every this many steps (<= 0: at epoch ends only)

    @property
    def num_epochs(self) -> int:
        return -(-self.stop_step // self.steps_per_epoch)

    def epoch_of(self, step: int) -> tuple[int, int]:
        """(epoch, index of the step's batch in it)."""
        return divmod(step, self.steps_per_epoch)

    def steps_in(self, epoch: int) -> int:
        return min(self.steps_per_epoch, self.stop_step - epoch * self.steps_per_epoch)

    def ends_epoch(self, step: int) -> bool:
        """Whether the step just taken ends an epoch (or the run): test, checkpoint."""
        return step % self.steps_per_epoch == 0 or step == self.stop_step

    def checkpoints(self, step: int) -> bool:
        """Whether the step just taken is a checkpoint inside an epoch (its end saves anyway)."""
        return (self.checkpoint_every > 0 and step % self.checkpoint_every == 0
                and not self.ends_epoch(step))

    def reports(self, step: int) -> bool:
        """Whether the metrics are fetched after this step: the progress bar and TensorBoard,
        a finite-loss check before a checkpoint, a point where all processes agree on a stop."""
        index = step - self.epoch_of(step - 1)[0] * self.steps_per_epoch
        return index % self.log_every == 0 or self.ends_epoch(step) or self.checkpoints(step)

    def dispatch_size(self, step: int) -> int:
        """steps_per_dispatch where the block from `step` is aligned to it, ends by the
        epoch's end and passes no checkpoint; otherwise 1. A function of the step alone: the
        many-step program rounds differently from the one-step one, so a resumed run calls
        the same program at each step as the uninterrupted run did."""
        size = self.steps_per_dispatch
        epoch, index = self.epoch_of(step)
        fits = (size > 1 and index % size == 0 and index + size <= self.steps_in(epoch)
                and not any(self.checkpoints(s) for s in range(step + 1, step + size)))
        return size if fits else 1


def plan_steps(config: ml_collections.ConfigDict, num_examples: int, shards: int = 1) -> Plan:
    """Full batches only; train.steps > 0 stops early; train.schedule_epochs > 0 stretches the
    schedule beyond the run (the first epochs of a longer one)."""
    steps_per_epoch = (num_examples // shards) // (config.train.batch_size // shards)
    if steps_per_epoch == 0:
        raise ConfigError(f'config.train.batch_size={config.train.batch_size} is larger than the '
                          f'{num_examples} training images')
    stop = (config.train.steps if config.train.steps > 0
            else config.train.epochs * steps_per_epoch)
    schedule = (config.train.schedule_epochs * steps_per_epoch if config.train.schedule_epochs
                else stop)
    return Plan(steps_per_epoch, stop, max(schedule, stop), config.train.steps_per_dispatch,
                config.train.log_every_steps, config.checkpoint.every_steps)
