"""Augmentation on the device, inside the jitted step: crops, flips, cutout."""
import jax
import jax.numpy as jnp
import numpy as np


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
