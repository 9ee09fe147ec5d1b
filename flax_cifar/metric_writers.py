"""Metrics to TensorBoard event files and to a JSON-lines file, from process 0 only."""
import json
import os

import tensorflow as tf

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
        self._summary = tf.summary.create_file_writer(os.path.join(workdir, 'tensorboard'))

    def _drop_records_after(self, step: int):
        """Epochs logged after the checkpoint we resume from are retrained: forget them."""
        records = read_records(self.jsonl_path) if gfile.exists(self.jsonl_path) else []
        kept = [r for r in records if r['step'] <= step]
        if len(kept) != len(records):
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
        if self.enabled:
            self._summary.close()


def read_records(path: str) -> list[dict]:
    """The records of a metrics.jsonl file; a line cut short by a kill is skipped."""
    records = []
    with gfile.GFile(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
