import os
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Decoded-dataset caches of the tests' small folders go to a throwaway place, also for the
# subprocesses the tests start.
import tempfile  # noqa: E402
os.environ['XDG_CACHE_HOME'] = tempfile.mkdtemp(prefix='flax_cifar_test_cache_')
# Many tests train the same small network, several in subprocesses: compile each step once.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(os.environ['XDG_CACHE_HOME'], 'jax'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root
sys.path.insert(0, REPO)

import numpy as np
import pytest


def smoke_config(dataset=None, **overrides):
    """configs/smoke.py (a tiny DSResNet) reading `dataset`, with `overrides` applied."""
    from configs import smoke
    config = smoke.get_config()
    if dataset is not None:
        config.dataset = dataset
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


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / 'data')
