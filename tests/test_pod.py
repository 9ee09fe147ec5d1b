"""The Cloud TPU path end to end on this machine: the real launch.sh drives a stand-in
`gcloud` (tests/stand_in_gcloud.py: two workers, each its own home, over localhost) that
installs, trains into a gs:// workdir on a real GCS server, is preempted, resumes, is killed
and reruns; the result equals an uninterrupted run. Only the TPU itself is not real.
"""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from etils import epath

from conftest import ORIGINAL_CACHE_HOME, REPO
from flax_cifar.data import arrays, types
from flax_cifar.evaluation import inference

pytestmark = pytest.mark.slow

TRAIN_IMAGES, BATCH = 128, 8         # 16 steps an epoch over the two workers
EPOCHS = 8                           # long enough to be stopped twice on the way
TOTAL_STEPS = EPOCHS * TRAIN_IMAGES // BATCH


def python_older_than_3_11() -> str:
    """A Python 3.10 interpreter (the python3 of every TPU image): $FLAX_CIFAR_TEST_PYTHON310,
    else the first python3.10 on PATH that runs."""
    candidates = [os.environ.get('FLAX_CIFAR_TEST_PYTHON310')] + [
        os.path.join(d, 'python3.10') for d in os.environ['PATH'].split(os.pathsep)]
    for path in filter(None, candidates):
        if os.access(path, os.X_OK) and subprocess.run(
                [path, '-c', 'import sys; assert sys.version_info[:2] == (3, 10)'],
                capture_output=True).returncode == 0:
            return path
    pytest.fail('tests/test_pod.py needs a Python 3.10 to stand in for the TPU image\'s '
                'python3: put one on PATH or name it in FLAX_CIFAR_TEST_PYTHON310')


def small_dataset(seed: int, count: int) -> types.Split:
    """Three classes, each bright in its own channel under noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count).astype(np.int32)
    images = rng.integers(0, 100, (count, 32, 32, 3)).astype(np.uint8)
    images[np.arange(count), :, :, labels] += 150
    return types.Split(images, labels)


@pytest.fixture(scope='module')
def pod(tmp_path_factory, gcs_server):
    """(launch(*args) -> CompletedProcess, stand-in root, bucket URL, data URL)."""
    from google.cloud import storage
    storage.Client().create_bucket('pod')
    data = 'gs://pod/data'
    arrays.save(data, {'train': small_dataset(0, TRAIN_IMAGES), 'test': small_dataset(1, 24)},
                ['r', 'g', 'b'])
    root = tmp_path_factory.mktemp('stand_in')
    bin_dir = root / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'gcloud').write_text(
        f'#!/bin/sh\nexec {sys.executable} {REPO}/tests/stand_in_gcloud.py "$@"\n')
    (bin_dir / 'gcloud').chmod(0o755)
    env = {**os.environ, 'PATH': f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
           'STAND_IN_GCLOUD_ROOT': str(root), 'STAND_IN_PYTHON3': python_older_than_3_11(),
           # No network for the workers' packages: uv takes them from the cache that
           # installed this environment (.ci/run); pip's cache serves uv itself.
           'UV_OFFLINE': '1', 'UV_CACHE_DIR': os.path.join(ORIGINAL_CACHE_HOME, 'uv'),
           'PIP_CACHE_DIR': os.path.join(ORIGINAL_CACHE_HOME, 'pip'),
           'PIP_ROOT_USER_ACTION': 'ignore'}
    flags = ['--zone', 'us-central2-b', '--tpu-type', 'v4-16', '--python', '3.11',
             '--jax', 'jax', '--config', 'configs/smoke.py']
    run_flags = [f'--config.data.dataset=arrays:{data}', f'--config.train.epochs={EPOCHS}',
                 '--config.checkpoint.every_steps=16', '--config.train.log_every_steps=8']

    def launch(*args, workdir=None, wait=True):
        command = ['bash', os.path.join(REPO, 'launch.sh'), *flags,
                   *(['--workdir', workdir] if workdir else []), *args, '--', *run_flags]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        if not wait:
            return process
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output[-3000:]
        return output

    return launch, root, data


def worker(root, i) -> str:
    return os.path.join(root, 'flax-cifar', f'worker{i}', 'flax_cifar')


def checkpoint_steps(workdir: str) -> list[int]:
    """The finalized checkpoint steps in a gs:// workdir, read afresh (gcsfs would answer
    from its listing cache, blind to what the workers wrote since)."""
    from google.cloud import storage
    bucket, _, prefix = workdir[len('gs://'):].partition('/')
    names = storage.Client().list_blobs(bucket, prefix=f'{prefix}/checkpoints/')
    # Orbax marks a finished save on Cloud Storage with checkpoints/<step>/commit_success.txt.
    parts = [b.name[len(prefix) + 1:].split('/') for b in names]
    return sorted(int(p[1]) for p in parts if len(p) == 3 and p[2] == 'commit_success.txt'
                  and p[1].isdigit())


def wait_for(condition, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.5)


def alive(pid: int) -> bool:
    """Whether the process is alive (not gone, not a zombie awaiting its parent)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] not in 'ZX'
    except FileNotFoundError:
        return False


def trained_state(workdir: str):
    return inference.restore_for_inference(workdir, 'latest')[0]


def calls(root) -> list[list[str]]:
    with open(os.path.join(root, 'calls.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def straight(pod):
    """The output of `launch.sh up` training gs://pod/straight, never interrupted."""
    launch, _, _ = pod
    return launch('up', workdir='gs://pod/straight')


def test_up_installs_a_supported_python_and_trains_two_hosts_into_gcs(pod, straight):
    launch, root, _ = pod
    output = straight
    # up = create, copy, install, train, then worker 0's log until its run ends.
    assert 'Test set: Average loss' in output and 'Workdir gs://pod/straight: ' in output
    create = calls(root)[0]
    assert create[:5] == ['compute', 'tpus', 'tpu-vm', 'create', 'flax-cifar']
    assert '--version=tpu-ubuntu2204-base' in create  # v4's software version
    for i in (0, 1):
        home = worker(root, i)
        python3 = subprocess.run([os.path.join(home, '..', '.stand-in-bin', 'python3'),
                                  '--version'], capture_output=True, text=True).stdout
        venv = subprocess.run([os.path.join(home, '.venv', 'bin', 'python'), '--version'],
                              capture_output=True, text=True).stdout
        assert python3.startswith('Python 3.10') and venv.startswith('Python 3.11'), (
            python3, venv)
    # Every process trained: a global batch split over two hosts, each reading its own rows.
    log1 = open(os.path.join(worker(root, 1), 'train.log')).read()
    assert 'Process 1 of 2 holds training rows 64:128' in log1
    workdir = epath.Path('gs://pod/straight')
    names = {p.name for p in workdir.iterdir()}
    assert {'checkpoints', 'metrics.jsonl', 'tensorboard', 'curves.png'} <= names
    assert 'lock' not in names  # released at the end
    assert checkpoint_steps(str(workdir))[-1] == TOTAL_STEPS
    records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
    assert len(records) == EPOCHS


def test_preempted_then_killed_run_resumes_to_the_uninterrupted_result(pod, straight):
    launch, root, _ = pod
    workdir = 'gs://pod/interrupted'
    running = launch('train', workdir=workdir, wait=False)
    assert running.wait(timeout=60) == 0  # train only starts the workers
    wait_for(lambda: checkpoint_steps(workdir), 'the first checkpoint')
    # A spot preemption: SIGTERM reaches one worker; both save the same step and stop.
    pids = [int(open(os.path.join(worker(root, i), 'train.pid')).read()) for i in (0, 1)]
    os.kill(pids[1], signal.SIGTERM)
    log = launch('logs')  # returns when worker 0's process ends
    saved = int(log.split('SIGTERM: saved a checkpoint at step ')[1].split(';')[0])
    wait_for(lambda: not any(map(alive, pids)), 'both workers to stop', timeout=60)
    assert 0 < saved < TOTAL_STEPS and checkpoint_steps(workdir)[-1] == saved
    # Resumed, then killed outright (both workers, as a crashed VM) after a later checkpoint.
    launch('train', workdir=workdir)
    wait_for(lambda: checkpoint_steps(workdir)[-1] > saved, 'a checkpoint after the resume')
    for i in (0, 1):
        os.kill(int(open(os.path.join(worker(root, i), 'train.pid')).read()), signal.SIGKILL)
    killed_at = checkpoint_steps(workdir)[-1]
    assert killed_at < TOTAL_STEPS
    launch('train', workdir=workdir)  # the stale lock of the killed run does not block it
    log = launch('logs')
    assert 'Resuming from the checkpoint at step' in log
    assert checkpoint_steps(workdir)[-1] == TOTAL_STEPS
    # Equal to the run never interrupted (the first test's), bit for bit.
    straight, resumed = trained_state('gs://pod/straight'), trained_state(workdir)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, straight.params, resumed.params)))


def test_evaluate_export_and_predict_use_the_gcs_workdir(straight, tmp_path, capsys):
    """In this process (its clients reach the same GCS server): what main.py's modes call."""
    import PIL.Image

    from flax_cifar import export, exported
    from flax_cifar.evaluation import report
    workdir = 'gs://pod/straight'
    report.evaluate_checkpoint(workdir, 'best', None)
    assert 'Test set: Average loss' in capsys.readouterr().out
    assert epath.Path(f'{workdir}/confusion_matrix_step{TOTAL_STEPS}.png').exists()
    export.export(workdir, calibration_size=32)
    names = {p.name for p in epath.Path(f'{workdir}/export').iterdir()}
    assert {'model_float32.tflite', 'model_int8.tflite', 'model.onnx', 'export.json'} <= names
    image = small_dataset(1, 24)
    path = tmp_path / 'green.png'
    PIL.Image.fromarray(image.images[list(image.labels).index(1)]).save(path)
    for model in ('model.onnx', 'model_int8.tflite'):
        [(_, predicted, _)] = exported.predict_files(f'{workdir}/export/{model}', [str(path)])
        assert predicted == 'g', model
