"""Inference from a workdir: its checkpoint restored with the config and class names it
carries, images read from files, log-probabilities over the configured test-time views."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import PIL.Image
from etils import epath

from flax_cifar.data import types
from flax_cifar.errors import InputError
from flax_cifar.evaluation.views import average_views, test_time_views, view_images
from flax_cifar.state import train_state
from flax_cifar.state.train_state import inference_variables
from flax_cifar.workdir import checkpointing


def restore_for_inference(workdir: str, which: str = 'best'):
    """(state, config, class_names, step) from the `which` ('best' or 'latest') checkpoint:
    the weights (and their average) only, so that any optimizer's checkpoint restores."""
    if which not in ('best', 'latest'):
        raise InputError(f'--checkpoint={which!r}: choose best or latest')
    checkpoints = checkpointing.Checkpoints(workdir, read_only=True)
    step = checkpoints.best_step() if which == 'best' else checkpoints.latest_step()
    if step is None:
        raise InputError(f'--workdir {workdir}: no checkpoint in {checkpoints.directory}')
    meta = checkpoints.read_meta(step)
    config = ml_collections.ConfigDict(meta['config'])
    class_names = meta['class_names']
    model = train_state.model_of(config, len(class_names))
    state = train_state.create_train_state(jax.random.key(0), model, optax.identity(),
                                           ema=train_state.keeps_average(config.average))
    state = checkpoints.restore_weights(step, state, meta['architecture'])
    checkpoints.close()
    return state, config, class_names, step


@functools.partial(jax.jit, static_argnames=('shift', 'mirrored', 'ema', 'normalization'))
def _view_logits(state, images, shift, mirrored, ema, normalization):
    return state.apply_fn(inference_variables(state, ema), view_images(
        types.normalize(images, normalization), shift, mirrored), train=False)


class ViewLogits:
    """Logits of uint8 NHWC images under test-time views, each view computed once (kept in
    `logits`, keyed by (shift, mirrored)), so that several settings of (flip, translate)
    share their common views."""

    def __init__(self, state, images: np.ndarray, batch_size: int = 1000, ema: bool = True,
                 normalization: str = 'mean_std'):
        self.state, self.ema, self.normalization = state, ema, normalization
        # On the device once, for every view.
        self.batches = [jnp.asarray(images[i:i + batch_size])
                        for i in range(0, len(images), batch_size)]
        self.logits = {}

    def logits_of(self, shift: int, mirrored: bool) -> np.ndarray:
        if (shift, mirrored) not in self.logits:
            self.logits[shift, mirrored] = np.concatenate([
                np.asarray(_view_logits(self.state, batch, shift, mirrored, self.ema,
                                        self.normalization))
                for batch in self.batches])
        return self.logits[shift, mirrored]

    def log_probabilities(self, flip: bool = False, translate: int = 0) -> np.ndarray:
        """Log class probabilities averaged over views as predict_logits does."""
        logits = average_views(self.logits_of, flip, translate)
        return np.asarray(jax.nn.log_softmax(jnp.asarray(logits)))


def load_image(path: str) -> np.ndarray:
    """An image file as 32x32 RGB uint8; other sizes are resized (area-averaged)."""
    try:
        with epath.Path(path).open('rb') as f, PIL.Image.open(f) as image:  # local or gs://
            image = image.convert('RGB')  # grayscale, palette and RGBA files too
    except (OSError, ValueError) as e:
        raise InputError(f'{path}: not a readable image ({str(e).splitlines()[0][:120]})') from None
    size = types.IMAGE_SHAPE[1::-1]  # (width, height)
    if image.size != size:
        image = image.resize(size, PIL.Image.Resampling.BOX)  # area averaging
    return np.asarray(image, np.uint8)


def log_probabilities(workdir: str, images: np.ndarray, which: str = 'best'):
    """(log-probabilities, class names) of uint8 images from the workdir's checkpoint, over
    the test-time views its config names."""
    state, config, class_names, _ = restore_for_inference(workdir, which)
    views = ViewLogits(state, images, config.eval.batch_size, normalization=config.data.normalize)
    return views.log_probabilities(*test_time_views(config.eval)), class_names


def predict_files(workdir: str, paths: list[str], which: str = 'best') -> list[tuple]:
    """(path, class name, probability) per image file, from the workdir's checkpoint, over
    the test-time views its config names."""
    images = np.stack([load_image(p) for p in paths])
    log_probs, class_names = log_probabilities(workdir, images, which)
    return top_classes(paths, np.exp(log_probs), class_names)


def top_classes(paths: list[str], probabilities: np.ndarray, class_names: list[str]) -> list:
    """(path, class name, probability) of each row's most probable class."""
    return [(path, class_names[int(p.argmax())], float(p.max()))
            for path, p in zip(paths, probabilities)]
