"""What a run tells its reader: the seed's lines (`EPOCH: k`, the bar's `Loss=... Batch_id=...
Accuracy=...`, `Test set: Average loss ...`), how far and how long, and a summary at the end.
Only process 0 speaks."""
import time

import jax
import numpy as np
from tqdm import tqdm


class EpochSums:
    """Running train loss and accuracy of one epoch, from metrics fetched in order, and the
    seconds spent training it: a checkpoint keeps them, so that an epoch resumed after a
    stop reports what the uninterrupted epoch would, its time before the stop included."""

    def __init__(self, saved: dict | None = None):
        saved = saved or {'loss': 0.0, 'correct': 0, 'count': 0, 'seconds': 0.0}
        self.loss, self.correct, self.count = saved['loss'], saved['correct'], saved['count']
        self.started = time.time() - saved['seconds']

    def seconds(self) -> float:
        return time.time() - self.started

    def add(self, fetched: list, first_step: int):
        """`fetched`: the metrics of consecutive steps, each entry one step's or stacked."""
        losses, corrects, counts = (np.concatenate([np.atleast_1d(m[k]) for m in fetched])
                                    for k in ('loss', 'correct', 'count'))
        for offset, (loss, correct, count) in enumerate(zip(losses, corrects, counts)):
            if not np.isfinite(loss):
                raise FloatingPointError(
                    f'training loss became {loss} at step {first_step + offset}; stopping. '
                    f'The checkpoints saved before it are kept.')
            self.loss += float(loss) * int(count)
            self.correct += int(correct)
            self.count += int(count)

    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)

    def as_dict(self) -> dict:
        return {'loss': self.loss, 'correct': self.correct, 'count': self.count,
                'seconds': self.seconds()}


def minutes(seconds: float) -> str:
    return f'{seconds / 60:.1f} min' if seconds >= 60 else f'{seconds:.0f} s'


class Console:
    """The console of process 0 (silent elsewhere): one bar per epoch and the seed's lines."""

    def __init__(self, enabled: bool, num_epochs: int, batch_size: int):
        self.enabled, self.num_epochs, self.batch_size = enabled, num_epochs, batch_size
        self.bar = None
        self.epoch_seconds = []  # of the epochs trained by this process, for the estimate

    def say(self, *args):
        if self.enabled:
            print(*args, flush=True)

    def start_epoch(self, epoch: int, done: int, steps: int):
        left = ''
        if self.epoch_seconds:
            remaining = self.num_epochs - epoch
            left = f'; about {minutes(remaining * np.median(self.epoch_seconds))} left'
        self.say(f'\nEPOCH: {epoch} ({epoch + 1} of {self.num_epochs}{left})')
        self.bar = tqdm(disable=not self.enabled, initial=done, total=steps)
        self.rate_since = None  # (time, steps) of the epoch's first report

    def advance(self, steps: int):
        self.bar.update(steps)

    def report(self, loss: float, index: int, sums: EpochSums) -> float | None:
        """Updates the bar; returns images/s since the epoch's first report (None at it: the
        steps before it include compiling)."""
        self.bar.set_description(f'Loss={loss:.4f} Batch_id={index - 1} '
                                 f'Accuracy={100 * sums.accuracy():.2f}', refresh=False)
        now, rate = time.time(), None
        if self.rate_since is None:
            self.rate_since = (now, self.bar.n)
        elif self.bar.n > self.rate_since[1]:
            rate = (self.bar.n - self.rate_since[1]) * self.batch_size / max(
                now - self.rate_since[0], 1e-9)
            self.bar.set_postfix_str(f'{rate:,.0f} img/s')
        return rate

    def end_epoch(self, result: dict, seconds: float):
        self.bar.close()
        self.epoch_seconds.append(seconds)
        self.say(f"\nTest set: Average loss: {result['loss']:.4f}, Accuracy: "
                 f"{result['correct']}/{result['count']} ({100 * result['accuracy']:.2f}%)")


class RunLog:
    """What the loop tells at its reports and epoch ends: the console (process 0's bar and
    the seed's lines) and the metric writer (TensorBoard, metrics.jsonl)."""

    def __init__(self, console: Console, writer, learning_rate_fn):
        self.console, self.writer, self.learning_rate = console, writer, learning_rate_fn

    def steps(self, step: int, done: int, pending: list, sums: EpochSums):
        """The metrics of the steps up to `step` (`done` of its epoch) fetched, added to the
        epoch's sums (raising on a non-finite loss), shown and written. Waits for these steps
        only."""
        fetched = jax.device_get(pending)
        first = step - sum(np.atleast_1d(m['loss']).size for m in fetched) + 1
        sums.add(fetched, first)
        loss = float(np.atleast_1d(fetched[-1]['loss'])[-1])
        rate = self.console.report(loss, done, sums)
        self.writer.write_scalars(step, {
            'train/loss': loss, 'train/learning_rate': self.learning_rate(step - 1),
            **({'train/images_per_second': rate} if rate else {})})

    def epoch(self, epoch: int, step: int, sums: EpochSums, seconds: float, result: dict):
        self.console.end_epoch(result, seconds)
        self.writer.write_epoch({
            'epoch': epoch, 'step': step, 'epoch_time_s': seconds,
            'learning_rate': float(self.learning_rate(step - 1)),
            'train_loss': sums.loss / max(sums.count, 1), 'train_accuracy': sums.accuracy(),
            'test_loss': result['loss'], 'test_accuracy': result['accuracy']})


def summary(records: list[dict], workdir: str, files: list[str]) -> str:
    """The run in a few lines: best and final test accuracy with their epochs, the time, and
    what the workdir holds."""
    if not records:
        return f'Workdir {workdir}: {", ".join(files)}'
    best = max(records, key=lambda r: r['test_accuracy'])
    final = records[-1]
    trained = sum(r['epoch_time_s'] for r in records)
    return '\n'.join([
        f"Best test accuracy {100 * best['test_accuracy']:.2f}% after epoch {best['epoch']}; "
        f"final {100 * final['test_accuracy']:.2f}% after epoch {final['epoch']}; "
        f"{minutes(trained)} of training over {len(records)} epochs.",
        f'Workdir {workdir}: {", ".join(files)}'])
