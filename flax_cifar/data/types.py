"""What every part of the data path shares: the split type, the image shape, dataset names
and the normalization. Imports nothing else of the project."""
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

IMAGE_SHAPE = (32, 32, 3)
FOLDER_PREFIX = 'folder:'
ARRAYS_PREFIX = 'arrays:'
# Per-channel statistics of the CIFAR-10 training set (RGB, on the [0, 1] scale).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
NORMALIZATIONS = ('mean_std', 'centered')


def dataset_path(dataset: str, prefix: str) -> str | None:
    """PATH of a `prefix`PATH dataset name ('folder:~/cifar10', 'arrays:gs://b/c'), `~`
    expanded; None for a name of another kind."""
    return os.path.expanduser(dataset[len(prefix):]) if dataset.startswith(prefix) else None


class Split(NamedTuple):
    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int32


def normalize(images: jax.Array, kind: str = 'mean_std') -> jax.Array:
    """NHWC pixels in [0, 255] (uint8 or float) to float32: 'mean_std' gives each channel
    zero mean and unit variance over CIFAR-10; 'centered' is x / 255 - 0.5
    (xvel/cifar10-tiniest's input)."""
    x = images.astype(jnp.float32) / 255.0
    if kind == 'centered':
        return x - 0.5
    return (x - jnp.asarray(CIFAR10_MEAN)) / jnp.asarray(CIFAR10_STD)
