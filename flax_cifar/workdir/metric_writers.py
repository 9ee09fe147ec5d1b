"""Metrics to TensorBoard event files and to a JSON-lines file, from process 0 only."""
import json
import os
import time

from etils import epath  # local paths and gs:// alike
from flax import traverse_util
from tensorboardX import SummaryWriter  # TensorBoard event files without TensorFlow

from flax_cifar import errors, storage


class MetricWriter:
    """Scalars per step to TensorBoard; one JSON line per epoch to `metrics.jsonl`."""

    def __init__(self, workdir: str, enabled: bool = True, resume_step: int = 0):
        self.enabled = enabled
        if not enabled:
            return
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
        self.jsonl_path = os.path.join(workdir, 'metrics.jsonl')
        self._drop_records_after(resume_step)
        self._tensorboard_dir = os.path.join(workdir, 'tensorboard')
        self._summary_writer = None  # opened at the first write: a run with nothing to do
                                     # leaves no new event file

    @property
    def _summary(self):
        if self._summary_writer is None:
            self._summary_writer = SummaryWriter(self._tensorboard_dir)
        return self._summary_writer

    def _drop_records_after(self, step: int):
        """Epochs logged after the checkpoint we resume from are retrained: forget them. A
        file with unreadable lines is set aside first and rewritten with the readable ones."""
        if not epath.Path(self.jsonl_path).exists():
            return
        records, bad_lines = read_records(self.jsonl_path, count_bad=True)
        kept = [r for r in records if r.get('step', step + 1) <= step]
        if bad_lines:
            errors.set_aside(self.jsonl_path, f'{self.jsonl_path}.damaged.{int(time.time())}',
                             f'{bad_lines} line(s) are not JSON records; kept the others')
        if bad_lines or len(kept) != len(records):
            self._replace(''.join(json.dumps(r) + '\n' for r in kept))

    def _replace(self, text: str):
        """metrics.jsonl becomes `text` whole or not at all."""
        storage.write_atomic(self.jsonl_path, text)

    def write_scalars(self, step: int, scalars: dict):
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._summary.add_scalar(name, float(value), step)

    def write_config(self, config: dict):
        """The run's config as TensorBoard text and hyperparameters, at the run's start."""
        if not self.enabled:
            return
        flat = {k: v for k, v in traverse_util.flatten_dict(config, sep='.').items()
                if isinstance(v, (int, float, str, bool)) and v is not None}
        self._summary.add_text('config', '\n'.join(f'    {k} = {v!r}' for k, v in flat.items()))
        # In a folder of its own: tensorboardX names event files by the second, so a second
        # writer in the same folder and second would overwrite the first's file.
        self._summary.add_hparams(flat, {}, name='hparams', global_step=0)

    def write_epoch(self, record: dict):
        """Appends `record` as a JSON line and its numbers as TensorBoard scalars."""
        if not self.enabled:
            return
        # Appending is not possible on every filesystem (gs://): rewrite the small file.
        path = epath.Path(self.jsonl_path)
        self._replace((path.read_text() if path.exists() else '') + json.dumps(record) + '\n')
        self.write_scalars(record['step'], {f'epoch/{k}': v for k, v in record.items()
                                            if k not in ('epoch', 'step')})
        self._summary.flush()

    def close(self):
        if self.enabled and self._summary_writer is not None:
            self._summary_writer.close()


def read_records(path: str, count_bad: bool = False):
    """The records of a metrics.jsonl file, skipping lines that are not JSON objects (a
    damaged file); with count_bad, (records, number of lines skipped)."""
    records, bad = [], 0
    with epath.Path(path).open('rb') as f:
        for line in f:
            try:
                record = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif line.strip():
                bad += 1
    return (records, bad) if count_bad else records
