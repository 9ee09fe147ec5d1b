"""Evaluation and prediction from a workdir's checkpoints, without training.

The checkpoint carries its own config and class names, so a workdir is all it needs.
"""
import functools
import os

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np
import PIL.Image
from etils import epath

matplotlib.use('Agg')  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402

from flax_cifar import checkpointing, input_pipeline, optim, train, validation  # noqa: E402
from flax_cifar.errors import InputError  # noqa: E402


def restore_for_inference(workdir: str, which: str = 'best'):
    """(state, config, class_names, step) from the `which` ('best' or 'latest') checkpoint."""
    if which not in ('best', 'latest'):
        raise InputError(f'--checkpoint={which!r}: choose best or latest')
    checkpoints = checkpointing.Checkpoints(workdir, read_only=True)
    step = checkpoints.best_step() if which == 'best' else checkpoints.latest_step()
    if step is None:
        raise InputError(f'--workdir {workdir}: no checkpoint in {checkpoints.directory}')
    meta = checkpoints.read_meta(step)
    config = ml_collections.ConfigDict(meta['config'])
    class_names = meta['class_names']
    model = train.create_model(config, len(class_names))
    state = train.create_train_state(
        jax.random.key(0), model,
        train.create_optimizer(config, model, optim.create_learning_rate_fn(config, 1)),
        ema=validation.uses_ema(config))
    state, _ = checkpoints.restore(step, state, meta['architecture'])
    checkpoints.close()
    return state, config, class_names, step


@functools.partial(jax.jit, static_argnames=('shift', 'mirrored', 'ema'))
def _view_logits(state, images, shift, mirrored, ema):
    return state.apply_fn(train.inference_variables(state, ema), train.view_images(
        input_pipeline.normalize(images), shift, mirrored), train=False)


class ViewLogits:
    """Logits of uint8 NHWC images under test-time views, each view computed once (kept in
    `logits`, keyed by (shift, mirrored)), so that several settings of (flip, translate)
    share their common views."""

    def __init__(self, state, images: np.ndarray, batch_size: int = 1000, ema: bool = True):
        self.state, self.ema = state, ema
        # On the device once, for every view.
        self.batches = [jnp.asarray(images[i:i + batch_size])
                        for i in range(0, len(images), batch_size)]
        self.logits = {}

    def logits_of(self, shift: int, mirrored: bool) -> np.ndarray:
        if (shift, mirrored) not in self.logits:
            self.logits[shift, mirrored] = np.concatenate([
                np.asarray(_view_logits(self.state, batch, shift, mirrored, self.ema))
                for batch in self.batches])
        return self.logits[shift, mirrored]

    def log_probabilities(self, flip: bool = False, translate: int = 0) -> np.ndarray:
        """Log class probabilities averaged over views as train.predict_logits does."""
        logits = train.average_views(self.logits_of, flip, translate)
        return np.asarray(jax.nn.log_softmax(jnp.asarray(logits)))


def predict_log_probabilities(state, images: np.ndarray, batch_size: int = 1000,
                              flip: bool = False, ema: bool = True,
                              translate: int = 0) -> np.ndarray:
    """Log class probabilities for uint8 NHWC images (flip, translate: test-time views, as
    in train.predict_logits; ema: the moving average of the weights, where the state keeps
    one)."""
    return ViewLogits(state, images, batch_size, ema).log_probabilities(flip, translate)


# Test-time views whose accuracy `evaluate_checkpoint` reports beside the configured ones:
# name -> (flip, translate).
VIEWS = {'none': (False, 0), 'flip': (True, 0), 'flip and 1-pixel shifts': (True, 1)}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def format_report(matrix: np.ndarray, class_names: list[str]) -> str:
    width = max(8, max(len(n) for n in class_names) + 1)
    lines = [f"{'class':<{width}}{'accuracy':>10}   confusion (rows: true, columns: predicted)"]
    for name, row in zip(class_names, matrix):
        accuracy = row[class_names.index(name)] / max(row.sum(), 1)
        lines.append(f'{name:<{width}}{100 * accuracy:>9.2f}%   ' +
                     ' '.join(f'{v:>5d}' for v in row))
    return '\n'.join(lines)


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: str, title: str):
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(matrix, cmap='Blues')
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha='right')
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title(title)
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha='center', va='center', fontsize=7,
                color='white' if v > matrix.max() / 2 else 'black')
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    with epath.Path(path).open('wb') as f:  # local or gs://
        fig.savefig(f, format='png', dpi=120)
    plt.close(fig)


def evaluate_checkpoint(workdir: str, which: str = 'best', dataset: str | None = None) -> dict:
    """Test loss, accuracy, per-class accuracy and confusion matrix of a saved checkpoint.

    Prints the table and writes `confusion_matrix_step<N>.png` into the workdir.
    """
    state, config, class_names, step = restore_for_inference(workdir, which)
    dataset = dataset or config.dataset
    test = input_pipeline.load_split(dataset, 'test', config.data_dir,
                                     config.get('data_cache_dir'))
    # The configured views give the loss, the accuracy and the confusion matrix; the others'
    # accuracies are reported beside it, as their effect on this checkpoint.
    views = train.test_time_views(config)
    flip, translate = views
    test_logits = ViewLogits(state, test.images, config.eval_batch_size)
    log_probabilities = test_logits.log_probabilities(flip, translate)
    matrix = confusion_matrix(test.labels, log_probabilities.argmax(-1), len(class_names))
    count = len(test.labels)
    result = {'loss': float(-log_probabilities[np.arange(count), test.labels].mean()),
              'correct': int(np.trace(matrix)), 'count': count,
              'accuracy': float(np.trace(matrix)) / count}
    view_accuracies = {
        name: float(np.mean(test_logits.log_probabilities(*other).argmax(-1) == test.labels))
        for name, other in VIEWS.items()}
    print(f'{which} checkpoint: step {step} of {workdir}')
    print(f"Test set: Average loss: {result['loss']:.4f}, Accuracy: "
          f"{result['correct']}/{result['count']} ({100 * result['accuracy']:.2f}%)")
    print(f'Test-time views: configured flip={flip}, translate={translate} (config.eval_flip, '
          f'config.eval_translate); ' + ', '.join(
              f'{name}: {100 * accuracy:.2f}%' for name, accuracy in view_accuracies.items()))
    raw_accuracy = None
    if train.ema_of(state) is not None:
        raw = ViewLogits(state, test.images, config.eval_batch_size,
                         ema=False).log_probabilities(flip, translate)
        raw_accuracy = float(np.mean(raw.argmax(-1) == test.labels))
        print(f'Moving average of the weights (config.ema_decay={config.ema_decay}); '
              f'the weights themselves: {100 * raw_accuracy:.2f}%')
    print(format_report(matrix, class_names))
    path = os.path.join(workdir, f'confusion_matrix_step{step}.png')
    plot_confusion_matrix(matrix, class_names, path,
                          f"step {step}: {100 * result['accuracy']:.2f}% on {dataset}")
    print(f'Confusion matrix plot: {path}')
    return {**result, 'step': step, 'confusion_matrix': matrix, 'views': views,
            'view_accuracies': view_accuracies, 'without_ema_accuracy': raw_accuracy,
            'per_class_accuracy': matrix.diagonal() / np.maximum(matrix.sum(1), 1)}


def load_image(path: str) -> np.ndarray:
    """An image file as 32x32 RGB uint8; other sizes are resized (area-averaged)."""
    try:
        with epath.Path(path).open('rb') as f, PIL.Image.open(f) as image:  # local or gs://
            image = image.convert('RGB')  # grayscale, palette and RGBA files too
    except (OSError, ValueError) as e:
        raise InputError(f'{path}: not a readable image ({str(e).splitlines()[0][:120]})') from None
    size = input_pipeline.IMAGE_SHAPE[1::-1]  # (width, height)
    if image.size != size:
        image = image.resize(size, PIL.Image.Resampling.BOX)  # area averaging
    return np.asarray(image, np.uint8)


def predict_files(workdir: str, paths: list[str], which: str = 'best') -> list[tuple]:
    """(path, class name, probability) per image file, from the workdir's checkpoint."""
    state, config, class_names, _ = restore_for_inference(workdir, which)
    images = np.stack([load_image(p) for p in paths])
    flip, translate = train.test_time_views(config)
    probabilities = np.exp(predict_log_probabilities(state, images, flip=flip,
                                                     translate=translate))
    return [(path, class_names[int(p.argmax())], float(p.max()))
            for path, p in zip(paths, probabilities)]
