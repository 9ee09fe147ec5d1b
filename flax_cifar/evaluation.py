"""Evaluation: test-time views, the evaluation step and loop, and evaluation and prediction
from a workdir's checkpoints (which carry their own config and class names)."""
import functools
import os

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np
import PIL.Image
from etils import epath
from jax.sharding import Mesh

matplotlib.use('Agg')  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402

from flax_cifar import (checkpointing, data_parallel, input_pipeline, optim,  # noqa: E402
                        train_state, validation)
from flax_cifar.errors import InputError  # noqa: E402
from flax_cifar.host_data import HostSplit  # noqa: E402
from flax_cifar.train_state import TrainState, inference_variables  # noqa: E402


def test_time_views(config: ml_collections.ConfigDict) -> tuple[bool, int]:
    """(flip, translate) of predict_logits, as the config asks for them."""
    return bool(config.get('eval_flip', False)), int(config.get('eval_translate', 0))


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


def eval_step(state: TrainState, batch: dict, flip: bool = False, ema: bool = True,
              translate: int = 0):
    """Summed loss and correct count over the examples whose `mask` is true."""
    logits = predict_logits(state, batch['image'], flip, ema, translate)
    mask = batch['mask']
    loss = optim.cross_entropy(logits, batch['label'])
    return {'loss_sum': jnp.sum(jnp.where(mask, loss, 0.0)),
            'correct': jnp.sum((jnp.argmax(logits, -1) == batch['label']) & mask),
            'count': jnp.sum(mask)}


def make_evaluate(mesh: Mesh, batch_size: int, flip: bool = False, ema: bool = True,
                  translate: int = 0):
    """evaluate(state, split) -> mean loss and accuracy; the batch step compiles once.

    flip, translate: test-time views (predict_logits); ema: the weights' moving average
    where the state keeps one.
    """
    hosts = mesh.shape[data_parallel.HOSTS]
    per_host = -(-batch_size // hosts)

    @jax.jit
    def eval_fn(state, split: HostSplit, index):
        rows_per_host = split.labels.shape[0] // hosts
        positions = index * per_host + jnp.arange(per_host)
        # The last partial batch repeats the final row instead of padding the split; the mask
        # keeps the repeats out of the sums.
        ids = jnp.broadcast_to(jnp.minimum(positions, rows_per_host - 1), (hosts, per_host))
        images, labels, valid = data_parallel.take_rows(
            mesh, (split.images, split.labels, split.valid), ids)
        batch = {'image': input_pipeline.normalize(images), 'label': labels,
                 'mask': valid & jnp.tile(positions < rows_per_host, hosts)}
        return eval_step(state, data_parallel.split_over_devices(mesh, batch), flip, ema,
                         translate)

    def evaluate(state: TrainState, split: HostSplit) -> dict:
        num_batches = -(-split.labels.shape[0] // hosts // per_host)
        sums = [eval_fn(state, split, i) for i in range(num_batches)]
        totals = jax.tree.map(lambda *x: float(np.sum(x)), *jax.device_get(sums))
        return {'loss': totals['loss_sum'] / totals['count'], 'correct': int(totals['correct']),
                'count': int(totals['count']), 'accuracy': totals['correct'] / totals['count']}

    return evaluate


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
    model = train_state.create_model(config, len(class_names))
    state = train_state.create_train_state(
        jax.random.key(0), model,
        train_state.create_optimizer(config, model, optim.create_learning_rate_fn(config, 1)),
        ema=validation.uses_ema(config))
    state, _ = checkpoints.restore(step, state, meta['architecture'])
    checkpoints.close()
    return state, config, class_names, step


@functools.partial(jax.jit, static_argnames=('shift', 'mirrored', 'ema'))
def _view_logits(state, images, shift, mirrored, ema):
    return state.apply_fn(inference_variables(state, ema), view_images(
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
        """Log class probabilities averaged over views as predict_logits does."""
        logits = average_views(self.logits_of, flip, translate)
        return np.asarray(jax.nn.log_softmax(jnp.asarray(logits)))


def predict_log_probabilities(state, images: np.ndarray, batch_size: int = 1000,
                              flip: bool = False, ema: bool = True,
                              translate: int = 0) -> np.ndarray:
    """Log class probabilities for uint8 NHWC images (flip, translate: test-time views, as
    in predict_logits; ema: the moving average of the weights, where the state keeps
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
    views = test_time_views(config)
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
    if train_state.ema_of(state) is not None:
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
    flip, translate = test_time_views(config)
    probabilities = np.exp(predict_log_probabilities(state, images, flip=flip,
                                                     translate=translate))
    return [(path, class_names[int(p.argmax())], float(p.max()))
            for path, p in zip(paths, probabilities)]
