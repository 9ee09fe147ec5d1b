"""CIFAR-10 input: whole splits into memory as uint8 arrays, augmentation on device.

CIFAR-10 is 180 MB as uint8, so each split is read once into a NumPy array and then held on
the accelerator; cropping, flipping and normalization run inside the jitted train step, so
the step never waits on a host pipeline. Datasets: 'arrays:PATH' (the decoded form that
flax_cifar.arrays writes; no TensorFlow), or a TFDS name or 'folder:PATH' (tfds_source).
"""
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flax_cifar.errors import InputError

# Per-channel statistics of the CIFAR-10 training set (RGB, on the [0, 1] scale).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
FOLDER_PREFIX = 'folder:'
ARRAYS_PREFIX = 'arrays:'
IMAGE_SHAPE = (32, 32, 3)


class Split(NamedTuple):
    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int32


def default_cache_dir() -> str:
    return os.path.join(os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
                        'flax_cifar')


def _arrays_path(dataset: str) -> str | None:
    if not dataset.startswith(ARRAYS_PREFIX):
        return None
    path = dataset[len(ARRAYS_PREFIX):]
    return path if '://' in path else os.path.expanduser(path)


def _tfds_source():
    """The TFDS reader, or one line saying how to do without it."""
    try:
        from flax_cifar import tfds_source
    except ImportError as e:
        if e.name not in ('tensorflow', 'tensorflow_datasets'):
            raise
        raise InputError(
            f'reading a TFDS or folder dataset needs {e.name}, which is not installed: '
            f"pip install -e '.[tfds]', or write the dataset as arrays where it is "
            f'(python -m flax_cifar.arrays) and use --config.dataset=arrays:PATH') from None
    return tfds_source


def num_examples(dataset: str, split: str, data_dir: str | None = None) -> int:
    """The size of `split`, known before anything is decoded."""
    path = _arrays_path(dataset)
    if path is not None:
        from flax_cifar import arrays
        return arrays.num_examples(path, split)
    return _tfds_source().num_examples(dataset, split, data_dir)


def load_split(dataset: str, split: str, data_dir: str | None = None,
               cache_dir: str | None = '', rows: tuple[int, int] | None = None) -> Split:
    """Rows [start, stop) of `split` of `dataset` as uint8 arrays (rows=None: all of it);
    only those rows are read. `cache_dir` keeps decoded folders (tfds_source.load_split)."""
    path = _arrays_path(dataset)
    if path is not None:
        from flax_cifar import arrays
        return arrays.load_split(path, split, rows)
    return _tfds_source().load_split(dataset, split, data_dir, cache_dir, rows)


def class_names(dataset: str, data_dir: str | None = None) -> list[str]:
    """Label names in label order (for folders: the class folder names, sorted)."""
    path = _arrays_path(dataset)
    if path is not None:
        from flax_cifar import arrays
        return arrays.class_names(path)
    return _tfds_source().class_names(dataset, data_dir)


def normalize(images: jax.Array) -> jax.Array:
    """uint8 NHWC images to float32, zero mean and unit variance per channel."""
    x = images.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(CIFAR10_MEAN)) / jnp.asarray(CIFAR10_STD)
