"""Patch whitening: the first conv's kernel set from the training images, then held fixed.

The trick of KellerJordan's airbench (and of Page's fast ResNet before it): the first layer
decorrelates the pixels of each patch, so the layers after it start from inputs whose
directions all have unit variance instead of a few strong colour and brightness directions.
Its kernel holds the top eigenvectors of the training patches' covariance, each scaled by
1 / sqrt(eigenvalue + eps) (config.whitening.eps) and paired with its negative, so the
ReLU after it drops no direction. The optimizer leaves it alone (optim.frozen_patterns).
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax

from flax_cifar.data import types
from flax_cifar.errors import InputError
from flax_cifar.state.train_state import TrainState, average_of

NUM_IMAGES = 5000   # training images whose patches estimate the covariance
CHUNK = 500         # images per slice of the estimate: patches of 5000 take ~0.5 GB at once


def patch_covariance(images: jax.Array, patch_shape: tuple[int, int]) -> jax.Array:
    """The (uncentred) covariance of every patch of normalized NHWC `images`, its entries
    ordered as a flattened (height, width, channels) kernel."""
    def chunk_sums(chunk):
        patches = lax.conv_general_dilated_patches(
            chunk, patch_shape, window_strides=(1, 1), padding='VALID',
            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
        # The patches come channel-major, (channels, height, width); a kernel is (h, w, c).
        channels = chunk.shape[-1]
        patches = patches.reshape(-1, channels, *patch_shape).transpose(0, 2, 3, 1)
        patches = patches.reshape(patches.shape[0], -1)
        return patches.T @ patches

    chunk = min(CHUNK, images.shape[0])
    usable = images.shape[0] - images.shape[0] % chunk
    chunks = images[:usable].reshape(-1, chunk, *images.shape[1:])
    positions = (images.shape[1] - patch_shape[0] + 1) * (images.shape[2] - patch_shape[1] + 1)
    return lax.map(chunk_sums, chunks).sum(0) / (usable * positions)


def whitening_kernel(images: jax.Array, kernel_shape: tuple[int, ...], eps: float) -> jax.Array:
    """An HWIO kernel (undilated) of `kernel_shape` whose outputs on the patches of
    normalized `images` are white: the top features/2 eigenvectors of their covariance,
    scaled by 1 / sqrt(eigenvalue + eps), and their negatives."""
    height, width, channels, features = kernel_shape
    patch_size = height * width * channels
    if features % 2 or features // 2 > patch_size:
        raise InputError(f'config.whitening.layer: the first conv has {features} features; '
                         f'whitening needs an even number, at most twice its {patch_size} '
                         f'patch entries')
    covariance = patch_covariance(images, (height, width))
    eigenvalues, eigenvectors = jnp.linalg.eigh(covariance)  # ascending
    top = slice(patch_size - features // 2, None)
    scaled = (eigenvectors[:, top] / jnp.sqrt(eigenvalues[top] + eps))[:, ::-1]
    return jnp.concatenate([scaled, -scaled], axis=1).reshape(kernel_shape)


@functools.partial(jax.jit, static_argnames='normalization')
def kernel_like(kernel: jax.Array, train_images: jax.Array, normalization: str,
                eps: float) -> jax.Array:
    """A whitening kernel shaped as `kernel`, from the first NUM_IMAGES rows of the uint8
    training images as the network sees them: every process computes the same one."""
    return whitening_kernel(types.normalize(train_images[:NUM_IMAGES], normalization),
                            kernel.shape, eps).astype(kernel.dtype)


def with_kernel(params: dict, layer: str, kernel: jax.Array) -> dict:
    return {**params, layer: {**params[layer], 'kernel': kernel}}


def whiten_layer(state: TrainState, layer: str, train_images: jax.Array, normalization: str,
                 eps: float) -> TrainState:
    """The state with `layer`'s kernel whitened (config.whitening.layer, config.data.normalize,
    config.whitening.eps), its average too."""
    kernel = kernel_like(state.params[layer]['kernel'], train_images, normalization, eps)
    state = state.replace(params=with_kernel(state.params, layer, kernel))
    if average_of(state) is not None:  # a buffer of its own: the step donates both
        state = state.replace(ema={**state.ema, 'params': with_kernel(
            state.ema['params'], layer, jnp.copy(kernel))})
    return state
