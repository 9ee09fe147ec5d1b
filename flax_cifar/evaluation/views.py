"""Test-time views: each image, its mirror image and 1-pixel shifts, their logits averaged.

The one definition of the views; inside the jitted evaluation, in offline evaluation and
prediction, and inside exported models alike.
"""
import jax
import jax.numpy as jnp
import ml_collections

from flax_cifar.state.train_state import TrainState, inference_variables


def test_time_views(evaluation: ml_collections.ConfigDict) -> tuple[bool, int]:
    """(flip, translate) of predict_logits, as config.eval asks for them."""
    return bool(evaluation.flip), int(evaluation.translate)


def view_images(images: jax.Array, shift: int, mirrored: bool) -> jax.Array:
    """One test-time view: images shifted `shift` pixels down-right (up-left if negative;
    borders reflected), then mirrored left to right if `mirrored`."""
    if shift:
        t = abs(shift)
        height, width = images.shape[1:3]
        padded = jnp.pad(images, ((0, 0), (t, t), (t, t), (0, 0)), mode='reflect')
        images = padded[:, :height, :width] if shift > 0 else padded[:, 2 * t:, 2 * t:]
    return images[:, :, ::-1] if mirrored else images


def average_views(logits_of, flip: bool, translate: int):
    """The test-time average of `logits_of(shift, mirrored)`, each view's logits: with flip,
    each image and its mirror image count alike; with translate=t, half of the weight goes
    to the views shifted t pixels down-right and up-left (airbench's multi-crop)."""
    def over_flips(shift):
        logits = logits_of(shift, False)
        return (logits + logits_of(shift, True)) / 2 if flip else logits

    logits = over_flips(0)
    if translate:
        logits = logits / 2 + (over_flips(translate) + over_flips(-translate)) / 4
    return logits


def predict_logits(state: TrainState, images: jax.Array, flip: bool = False,
                   ema: bool = True, translate: int = 0) -> jax.Array:
    """Logits of normalized images, averaged over the test-time views (average_views)."""
    variables = inference_variables(state, ema)
    return average_views(
        lambda shift, mirrored: state.apply_fn(
            variables, view_images(images, shift, mirrored), train=False),
        flip, translate)
