"""Metrics to TensorBoard event files and to a JSON-lines file, from process 0 only."""
import json
import os
import time

import tensorflow as tf

from flax_cifar import errors

gfile = tf.io.gfile  # local paths and gs:// alike


class MetricWriter:
    """Scalars per step to TensorBoard; one JSON line per epoch to `metrics.jsonl`."""

    def __init__(self, workdir: str, enabled: bool = True, resume_step: int = 0):
        self.enabled = enabled
        if not enabled:
            return
        gfile.makedirs(workdir)
        self.jsonl_path = os.path.join(workdir, 'metrics.jsonl')
        self._drop_records_after(resume_step)
        self._tensorboard_dir = os.path.join(workdir, 'tensorboard')
        self._summary_writer = None  # opened at the first write: a run with nothing to do
                                     # leaves no new event file

    @property
    def _summary(self):
        if self._summary_writer is None:
            self._summary_writer = tf.summary.create_file_writer(self._tensorboard_dir)
        return self._summary_writer

    def _drop_records_after(self, step: int):
        """Epochs logged after the checkpoint we resume from are retrained: forget them. A
        file with unreadable lines is set aside first and rewritten with the readable ones."""
        if not gfile.exists(self.jsonl_path):
            return
        records, bad_lines = read_records(self.jsonl_path, count_bad=True)
        kept = [r for r in records if r.get('step', step + 1) <= step]
        if bad_lines:
            errors.set_aside(self.jsonl_path, f'{self.jsonl_path}.damaged.{int(time.time())}',
                             f'{bad_lines} line(s) are not JSON records; kept the others')
        if bad_lines or len(kept) != len(records):
            with gfile.GFile(self.jsonl_path + '.tmp', 'w') as f:
                f.write(''.join(json.dumps(r) + '\n' for r in kept))
            gfile.rename(self.jsonl_path + '.tmp', self.jsonl_path, overwrite=True)

    def write_scalars(self, step: int, scalars: dict):
        if not self.enabled:
            return
        with self._summary.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, float(value))

    def write_epoch(self, record: dict):
        """Appends `record` as a JSON line and its numbers as TensorBoard scalars."""
        if not self.enabled:
            return
        # Appending is not possible on every filesystem (gs://): rewrite the small file.
        old = gfile.GFile(self.jsonl_path).read() if gfile.exists(self.jsonl_path) else ''
        with gfile.GFile(self.jsonl_path + '.tmp', 'w') as f:
            f.write(old + json.dumps(record) + '\n')
        gfile.rename(self.jsonl_path + '.tmp', self.jsonl_path, overwrite=True)
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
    with gfile.GFile(path, 'rb') as f:
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
