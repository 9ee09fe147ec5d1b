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
    return os.path.expanduser(dataset[len(ARRAYS_PREFIX):])


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


PAD_MODES = ('constant', 'reflect')


def random_crop_flip(rng: jax.Array, images: jax.Array, padding: int = 4,
                     flip: bool = True, pad_mode: str = 'constant') -> jax.Array:
    """Pad (zeros, or reflected borders), crop back at a random offset per image, and flip
    half of them.

    The torchvision recipe (RandomCrop(32, padding=4), RandomHorizontalFlip), on device.
    """
    n, h, w, c = images.shape
    crop_rng, flip_rng = jax.random.split(rng)
    if padding:
        padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                         mode=pad_mode)
        offsets = jax.random.randint(crop_rng, (n, 2), 0, 2 * padding + 1)
        images = jax.vmap(
            lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c)))(padded, offsets)
    if flip:
        flips = jax.random.bernoulli(flip_rng, 0.5, (n, 1, 1, 1))
        images = jnp.where(flips, images[:, :, ::-1, :], images)
    return images


def mirror_half(rng: jax.Array, images: np.ndarray, first_row: int,
                num_examples: int) -> np.ndarray:
    """`images`, rows first_row.. of a split of `num_examples`, with a fixed random half of
    the split mirrored: the choice is a function of `rng` and the row, whatever the hosts.

    For airbench's alternating flip: the step then mirrors every image in odd epochs, so
    each one is seen both ways in every two epochs instead of at random.
    """
    mirrored = np.asarray(jax.random.bernoulli(rng, 0.5, (num_examples,)))
    mirrored = mirrored[first_row:first_row + len(images)]
    return np.where(mirrored[:, None, None, None], images[:, :, ::-1], images)


def random_cutout(rng: jax.Array, images: jax.Array, size: int) -> jax.Array:
    """Zero a size x size square per image, centred anywhere, so clipped at the borders.

    Cutout (DeVries & Taylor, 2017) on normalized images: zero is the dataset mean.
    """
    n, h, w, _ = images.shape
    centres = jax.random.randint(rng, (n, 2), 0, jnp.array([h, w]))
    low = centres - size // 2
    rows, cols = jnp.arange(h), jnp.arange(w)
    inside_rows = (rows >= low[:, :1]) & (rows < low[:, :1] + size)  # (n, h)
    inside_cols = (cols >= low[:, 1:]) & (cols < low[:, 1:] + size)  # (n, w)
    cut = inside_rows[:, :, None, None] & inside_cols[:, None, :, None]
    return jnp.where(cut, jnp.zeros((), images.dtype), images)
