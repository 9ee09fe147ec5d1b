"""Augmentation on the device, inside the jitted step: one entry point, `train_batch`, and a
registry of ops, each registered once with the config.augment fields that turn it on.

An op is fn(config, key, batch, epoch) -> batch, turned on by a test of config.augment
alone and reading its fields there (normalize reads config.data.normalize, mixup's ramp the
schedule's epochs). batch holds 'image' (NHWC pixels in [0, 255], uint8 or float32, until
'normalize'; the network's input scale after it) and 'label'; ops run in registry order,
each on a random stream of its own (streams.py) folded with the step, so adding one changes
no other's draws. A new op is a function here and its config fields.
"""
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flax_cifar import streams
from flax_cifar.data import types

PAD_MODES = ('constant', 'reflect', 'edge')


class Op(NamedTuple):
    enabled: Callable[[ml_collections.ConfigDict], bool]  # of config.augment
    apply: Callable
    stream: int | None  # its random stream (streams.py), never renumbered; None: no draws


OPS: dict[str, Op] = {}


def register(name: str, stream: int | None, enabled: Callable[[ml_collections.ConfigDict], bool]):
    def add(fn):
        OPS[name] = Op(enabled, fn, stream)
        return fn
    return add


def active_ops(config: ml_collections.ConfigDict) -> list[str]:
    return [name for name, op in OPS.items() if op.enabled(config.augment)]


def train_batch(config: ml_collections.ConfigDict, images: jax.Array, labels: jax.Array,
                step: jax.Array, steps_per_epoch: int) -> dict:
    """A training batch from uint8 images: config's augmentation ops, then normalization
    (an op too, so that cutout can follow it), each op's draws a function of (seed, step)."""
    batch = {'image': images, 'label': labels}
    epoch = step // steps_per_epoch
    for name in active_ops(config):
        op = OPS[name]
        key = (None if op.stream is None
               else jax.random.fold_in(streams.key(config.seed, op.stream), step))
        batch = op.apply(config, key, batch, epoch)
    return batch


def _per_image(key, n: int, p: float) -> jax.Array:
    """(n, 1, 1, 1) booleans: which images an op with probability p touches."""
    return jax.random.bernoulli(key, p, (n, 1, 1, 1))


def random_crop_flip(rng: jax.Array, images: jax.Array, padding: int = 4,
                     flip: bool = True, pad_mode: str = 'constant') -> jax.Array:
    """Pad (zeros, reflected or repeated borders), crop back at a random offset per image,
    and flip half of them: torchvision's RandomCrop(32, padding) and RandomHorizontalFlip."""
    n, h, w, c = images.shape
    crop_rng, flip_rng = jax.random.split(rng)
    if padding:
        padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                         mode=pad_mode)
        offsets = jax.random.randint(crop_rng, (n, 2), 0, 2 * padding + 1)
        images = jax.vmap(
            lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c)))(padded, offsets)
    if flip:
        images = jnp.where(_per_image(flip_rng, n, 0.5), images[:, :, ::-1, :], images)
    return images


@register('crop_flip', streams.AUGMENT,
          lambda a: a.enabled and (a.crop_padding > 0 or (a.flip and not a.alternating_flip)))
def _crop_flip(config, key, batch, epoch):
    augment = config.augment
    images = random_crop_flip(key, batch['image'], augment.crop_padding,
                              augment.flip and not augment.alternating_flip, augment.crop_pad_mode)
    return {**batch, 'image': images}


def mirror_half(rng: jax.Array, images: np.ndarray, first_row: int,
                num_examples: int) -> np.ndarray:
    """`images`, rows first_row.. of a split of `num_examples`, with a fixed random half of
    the split mirrored: the choice is a function of `rng` and the row, whatever the hosts.
    With 'alternating_flip' every image is then seen both ways in every two epochs."""
    mirrored = np.asarray(jax.random.bernoulli(rng, 0.5, (num_examples,)))
    mirrored = mirrored[first_row:first_row + len(images)]
    return np.where(mirrored[:, None, None, None], images[:, :, ::-1], images)


@register('alternating_flip', streams.FLIP, lambda a: a.enabled and a.flip and a.alternating_flip)
def _alternating_flip(config, key, batch, epoch):
    """airbench's flip: the data come half mirrored (mirror_half); odd epochs mirror all."""
    images = batch['image']
    return {**batch, 'image': jnp.where(epoch % 2 == 1, images[:, :, ::-1], images)}


def rotate(images: jax.Array, degrees: jax.Array) -> jax.Array:
    """Each image turned about its centre by its angle, bilinear, borders reflected
    (kornia's RandomAffine(degrees, padding_mode='reflection'))."""
    _, h, w, _ = images.shape
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                              jnp.arange(w, dtype=jnp.float32), indexing='ij')
    cy, cx = (h - 1) / 2, (w - 1) / 2

    def one(image, angle):
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        # The output pixel (r, c) reads the input at the inverse rotation of its offset.
        source_r = cy + (rows - cy) * cos - (cols - cx) * sin
        source_c = cx + (rows - cy) * sin + (cols - cx) * cos
        return jnp.stack([jax.scipy.ndimage.map_coordinates(
            image[..., k], [source_r, source_c], order=1, mode='reflect')
            for k in range(image.shape[-1])], axis=-1)

    return jax.vmap(one)(images, jnp.deg2rad(degrees))


@register('rotate', streams.ROTATE, lambda a: a.enabled and a.rotate_degrees > 0)
def _rotate(config, key, batch, epoch):
    images = batch['image'].astype(jnp.float32)
    angle_key, apply_key = jax.random.split(key)
    n = images.shape[0]
    angles = jax.random.uniform(angle_key, (n,), minval=-config.augment.rotate_degrees,
                                maxval=config.augment.rotate_degrees)
    rotated = rotate(images, angles)
    chosen = _per_image(apply_key, n, config.augment.rotate_p)
    return {**batch, 'image': jnp.where(chosen, rotated, images)}


def sharpen(images: jax.Array, factors: jax.Array) -> jax.Array:
    """PIL's (and kornia's) sharpness on [0, 1] images: each image interpolated from its
    3x3-smoothed self by its factor (1: unchanged), the border pixels kept."""
    kernel = jnp.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], jnp.float32) / 13
    channels = images.shape[-1]
    smoothed = jax.lax.conv_general_dilated(
        images, jnp.tile(kernel[:, :, None, None], (1, 1, 1, channels)), (1, 1), 'VALID',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=channels)
    smoothed = images.at[:, 1:-1, 1:-1].set(jnp.clip(smoothed, 0.0, 1.0))
    return jnp.clip(smoothed + (images - smoothed) * factors[:, None, None, None], 0.0, 1.0)


@register('sharpen', streams.SHARPEN, lambda a: a.enabled and a.sharpen_p > 0)
def _sharpen(config, key, batch, epoch):
    images = batch['image'].astype(jnp.float32) / 255.0
    factor_key, apply_key = jax.random.split(key)
    n = images.shape[0]
    low, high = config.augment.sharpen_factors
    sharpened = sharpen(images, jax.random.uniform(factor_key, (n,), minval=low, maxval=high))
    images = jnp.where(_per_image(apply_key, n, config.augment.sharpen_p), sharpened, images)
    return {**batch, 'image': images * 255.0}


def _rgb_to_hsv(x):
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    value, low = jnp.max(x, -1), jnp.min(x, -1)
    delta = value - low
    saturation = jnp.where(value > 0, delta / jnp.where(value > 0, value, 1.0), 0.0)
    safe = jnp.where(delta > 0, delta, 1.0)
    hue = jnp.where(value == r, ((g - b) / safe) % 6,
                    jnp.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    return jnp.where(delta > 0, hue, 0.0) / 6 * 2 * math.pi, saturation, value


def _hsv_to_rgb(hue, saturation, value):
    h = hue / (2 * math.pi) * 6
    k = lambda n: (n + h) % 6
    f = lambda n: value - value * saturation * jnp.clip(jnp.minimum(k(n), 4 - k(n)), 0, 1)
    return jnp.stack([f(5), f(3), f(1)], axis=-1)


def color_jiggle(key: jax.Array, images: jax.Array, brightness: float, contrast: float,
                 saturation: float, hue: float) -> jax.Array:
    """kornia's ColorJiggle on [0, 1] images: brightness shifted by f - 1, contrast scaled by
    f, saturation scaled by f and hue turned by f * 2pi in HSV, f drawn per image from
    [1 - b, 1 + b] (hue: [-h, h]), the four in one random order per batch."""
    n = images.shape[0]
    keys = jax.random.split(key, 5)
    factor = lambda k, spread, centre: jax.random.uniform(
        k, (n, 1, 1), minval=centre - spread, maxval=centre + spread)
    b, c, s, h = (factor(keys[0], brightness, 1.0), factor(keys[1], contrast, 1.0),
                  factor(keys[2], saturation, 1.0), factor(keys[3], hue, 0.0))

    def adjust_saturation(x):
        hue_, sat, val = _rgb_to_hsv(x)
        return _hsv_to_rgb(hue_, jnp.clip(sat * s, 0, 1), val)

    def adjust_hue(x):
        hue_, sat, val = _rgb_to_hsv(x)
        return _hsv_to_rgb((hue_ + h * 2 * math.pi) % (2 * math.pi), sat, val)

    steps = [lambda x: jnp.clip(x + (b[..., None] - 1), 0, 1),
             lambda x: jnp.clip(x * c[..., None], 0, 1), adjust_saturation, adjust_hue]
    order = jax.random.permutation(keys[4], 4)
    for position in range(4):
        images = jax.lax.switch(order[position], steps, images)
    return images


@register('color_jiggle', streams.COLOR, lambda a: a.enabled and a.color_jiggle_p > 0)
def _color_jiggle(config, key, batch, epoch):
    images = batch['image'].astype(jnp.float32) / 255.0
    jiggle_key, apply_key = jax.random.split(key)
    jiggled = color_jiggle(jiggle_key, images, *config.augment.color_jiggle)
    chosen = _per_image(apply_key, images.shape[0], config.augment.color_jiggle_p)
    images = jnp.where(chosen, jiggled, images)
    return {**batch, 'image': images * 255.0}


def mixup_bound(config: ml_collections.ConfigDict, epoch) -> jax.Array:
    """The largest mixing weight at `epoch`: rising linearly over mixup_ramp of the schedule's
    epochs to mixup_max (xvel/cifar10-tiniest: min(epoch / epochs, 0.5))."""
    augment = config.augment
    ramp = augment.mixup_ramp * (config.train.schedule_epochs or config.train.epochs)
    return augment.mixup_max * jnp.minimum(epoch / ramp, 1.0) if ramp else augment.mixup_max


@register('mixup', streams.MIXUP, lambda a: a.mixup_max > 0)
def _mixup(config, key, batch, epoch):
    """Each image mixed with another of the batch by a weight drawn from [0, bound); the
    loss mixes the two labels alike (kornia's RandomMixUpV2, as tiniest uses it)."""
    images = batch['image'].astype(jnp.float32)
    n = images.shape[0]
    partner_key, weight_key = jax.random.split(key)
    partners = jax.random.permutation(partner_key, n)
    weights = jax.random.uniform(weight_key, (n,)) * mixup_bound(config, epoch)
    mixed = images * (1 - weights[:, None, None, None]) + images[partners] * weights[:, None,
                                                                                      None, None]
    return {**batch, 'image': mixed, 'mix_label': batch['label'][partners], 'mix_weight': weights}


@register('normalize', None, lambda a: True)
def _normalize(config, key, batch, epoch):
    """The network's input scale (config.data.normalize); types.normalize of the uint8 pixels."""
    return {**batch, 'image': types.normalize(batch['image'], config.data.normalize)}


def random_cutout(rng: jax.Array, images: jax.Array, size: int) -> jax.Array:
    """Zero a size x size square per image, centred anywhere, so clipped at the borders.
    Cutout (DeVries & Taylor, 2017) on normalized images: zero is the dataset mean."""
    n, h, w, _ = images.shape
    centres = jax.random.randint(rng, (n, 2), 0, jnp.array([h, w]))
    low = centres - size // 2
    rows, cols = jnp.arange(h), jnp.arange(w)
    inside_rows = (rows >= low[:, :1]) & (rows < low[:, :1] + size)  # (n, h)
    inside_cols = (cols >= low[:, 1:]) & (cols < low[:, 1:] + size)  # (n, w)
    cut = inside_rows[:, :, None, None] & inside_cols[:, None, :, None]
    return jnp.where(cut, jnp.zeros((), images.dtype), images)


@register('cutout', streams.CUTOUT, lambda a: a.cutout_size > 0)
def _cutout(config, key, batch, epoch):
    return {**batch, 'image': random_cutout(key, batch['image'], config.augment.cutout_size)}
