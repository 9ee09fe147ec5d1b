"""gs:// for what the project reads and writes, against a real GCS server (fake-gcs-server):
arrays datasets read row by row, the workdir lock's lease, a sweep's results."""
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from etils import epath

from conftest import REPO
from flax_cifar.data import arrays, types
from flax_cifar.errors import InputError
from flax_cifar.workdir import lock as workdir_lock


def split(count: int, seed: int = 0) -> types.Split:
    rng = np.random.default_rng(seed)
    return types.Split(rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
                                rng.integers(0, 3, count).astype(np.int32))


def test_arrays_on_gcs_are_read_row_range_by_row_range(gcs_bucket, tmp_path):
    train = split(10)
    arrays.save(f'{gcs_bucket}/data', {'train': train}, ['a', 'b', 'c'])
    assert arrays.class_names(f'{gcs_bucket}/data') == ['a', 'b', 'c']
    rows = arrays.load_split(f'{gcs_bucket}/data', 'train', (3, 7))
    np.testing.assert_array_equal(rows.images, train.images[3:7])
    np.testing.assert_array_equal(rows.labels, train.labels[3:7])
    with pytest.raises(InputError, match='exists'):
        arrays.save(f'{gcs_bucket}/data', {'train': train}, ['a', 'b', 'c'])


def lock_object(bucket: str):
    from google.cloud import storage
    return storage.Client().bucket(bucket[len('gs://'):]).blob('run/lock')


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    return process.pid


def test_a_live_run_holds_a_gcs_workdir_and_a_dead_ones_lease_is_taken_over(gcs_bucket):
    workdir = f'{gcs_bucket}/run'
    lock = workdir_lock.acquire(workdir)
    with pytest.raises(InputError, match=f'--workdir {workdir} is in use by another run '
                                         f'\\(process {os.getpid()} on host'):
        workdir_lock.acquire(workdir)
    lock.release()
    assert not lock_object(gcs_bucket).exists()
    # A run killed on this host: its process is gone, the rerun takes the lease at once.
    lock_object(gcs_bucket).upload_from_string(json.dumps(
        {'host': os.uname().nodename, 'pid': dead_pid(), 'started': 'then'}))
    start = time.monotonic()
    workdir_lock.acquire(workdir).release()
    assert time.monotonic() - start < workdir_lock.GcsLease.LEASE_S / 2


def test_a_lease_held_from_another_host_is_refused_while_renewed(gcs_bucket, monkeypatch):
    monkeypatch.setattr(workdir_lock.GcsLease, 'LEASE_S', 3.0)
    workdir = f'{gcs_bucket}/run'
    holder = json.dumps({'host': 'another-host', 'pid': 1, 'started': 'then'})
    lock_object(gcs_bucket).upload_from_string(holder)
    renewing = threading.Event()

    def renew():
        while not renewing.wait(0.5):
            lock_object(gcs_bucket).upload_from_string(holder)

    thread = threading.Thread(target=renew)
    thread.start()
    try:
        with pytest.raises(InputError, match='process 1 on host another-host'):
            workdir_lock.acquire(workdir)
    finally:
        renewing.set()
        thread.join()
    # Not renewed for LEASE_S: that run is gone, and this one takes over.
    lock = workdir_lock.acquire(workdir)
    assert json.loads(lock_object(gcs_bucket).download_as_text())['pid'] == os.getpid()
    lock.release()


@pytest.mark.slow
def test_a_sweep_writes_its_runs_and_results_into_gcs(gcs_bucket, tmp_path):
    data = f'{gcs_bucket}/data'
    arrays.save(data, {'train': split(16), 'test': split(8, seed=1)}, ['a', 'b', 'c'])
    sweep_file = tmp_path / 'sweep.py'
    sweep_file.write_text(
        "def get_sweep():\n    return dict(config='configs/smoke.py', runs={'tiny': {}},\n"
        "                overrides={'train.epochs': 1}, seeds=[0])\n")
    root = f'{gcs_bucket}/sweep'
    result = subprocess.run([sys.executable, '-m', 'flax_cifar.sweep', str(sweep_file),
                             '--root', root, '--override', f'data.dataset=arrays:{data}'],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    names = {p.name for p in epath.Path(root).iterdir()}
    assert {'results.md', 'results.csv', 'frontier.png', 'tiny_s0', 'tiny_s0.log'} <= names
    assert 'Test set: Average loss' in epath.Path(f'{root}/tiny_s0.log').read_text()
    assert '| tiny |' in epath.Path(f'{root}/results.md').read_text()
