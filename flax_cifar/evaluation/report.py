"""`--mode=evaluate`: a checkpoint's test accuracy under every test-time view, per class,
and its confusion matrix, printed and plotted into the workdir."""
import os

import numpy as np

from flax_cifar import plots
from flax_cifar.data import sources
from flax_cifar.evaluation import precise_bn
from flax_cifar.evaluation.inference import ViewLogits, restore_for_inference
from flax_cifar.evaluation.views import test_time_views
from flax_cifar.state import train_state

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


def evaluated_average(average) -> str:
    """Which weight average the checkpoint's accuracy is of, named by its config.average
    fields."""
    if average.lookahead.every:
        return (f"Lookahead's slow weights (config.average.lookahead.every="
                f'{average.lookahead.every}, config.average.lookahead.decay='
                f'{average.lookahead.decay})')
    return f'Moving average of the weights (config.average.ema_decay={average.ema_decay})'


def confusion_figure(matrix: np.ndarray, class_names: list[str], title: str):
    fig = plots.figure(figsize=(7, 6))
    ax = fig.subplots()
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
    return fig


def as_record(result: dict, class_names: list[str]) -> dict:
    """evaluate_checkpoint's result as plain JSON values, classes named."""
    return {'step': result['step'], 'accuracy': result['accuracy'], 'loss': result['loss'],
            'views': dict(zip(('flip', 'translate'), result['views'])),
            'view_accuracies': result['view_accuracies'],
            'class_names': class_names,
            'per_class_accuracy': dict(zip(class_names, result['per_class_accuracy'].tolist())),
            'confusion_matrix': result['confusion_matrix'].tolist()}


def evaluate_checkpoint(workdir: str, which: str = 'best', dataset: str | None = None,
                        precise_bn_batches: int = 0) -> dict:
    """Test loss, accuracy, per-class accuracy and confusion matrix of a saved checkpoint;
    with precise_bn_batches, of its weights with BatchNorm statistics recomputed over that
    many training batches (precise_bn.py), the stored statistics' accuracy beside it.

    Prints the table and writes `confusion_matrix_step<N>.png` into the workdir.
    """
    state, config, class_names, step = restore_for_inference(workdir, which)
    dataset = dataset or config.data.dataset
    test = sources.load_split(dataset, 'test', config.data.tfds_data_dir,
                                     config.data.cache_dir)
    # The configured views give the loss, the accuracy and the confusion matrix; the others'
    # accuracies are reported beside it, as their effect on this checkpoint.
    views = test_time_views(config.eval)
    flip, translate = views

    def accuracy_of(state, ema: bool = True) -> float:  # with the configured views
        logits = ViewLogits(state, test.images, config.eval.batch_size, ema=ema,
                            normalization=config.data.normalize)
        return float(np.mean(logits.log_probabilities(flip, translate).argmax(-1)
                             == test.labels))

    stored_accuracy = None
    if precise_bn_batches:
        stored_accuracy = accuracy_of(state)
        train = sources.load_split(dataset, 'train', config.data.tfds_data_dir,
                                   config.data.cache_dir)
        state = precise_bn.with_precise_stats(
            state, train_state.model_of(config, len(class_names)), train.images,
            precise_bn_batches, config.train.batch_size, config.seed, config.data.normalize)
    test_logits = ViewLogits(state, test.images, config.eval.batch_size,
                             normalization=config.data.normalize)
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
    if precise_bn_batches:
        print(f'PreciseBN: BatchNorm statistics recomputed over {precise_bn_batches} training '
              f'batches of {config.train.batch_size} (the stored ones: '
              f'{100 * stored_accuracy:.2f}%)')
    print(f"Test set: Average loss: {result['loss']:.4f}, Accuracy: "
          f"{result['correct']}/{result['count']} ({100 * result['accuracy']:.2f}%)")
    print(f'Test-time views: configured flip={flip}, translate={translate} (config.eval.flip, '
          f'config.eval.translate); ' + ', '.join(
              f'{name}: {100 * accuracy:.2f}%' for name, accuracy in view_accuracies.items()))
    raw_accuracy = None
    if train_state.average_of(state) is not None:
        raw_accuracy = accuracy_of(state, ema=False)
        print(f'{evaluated_average(config.average)}; the weights themselves: '
              f'{100 * raw_accuracy:.2f}%')
    print(format_report(matrix, class_names))
    path = os.path.join(workdir, f'confusion_matrix_step{step}.png')
    plots.save(confusion_figure(matrix, class_names,
                                f"step {step}: {100 * result['accuracy']:.2f}% on {dataset}"),
               path, dpi=120)
    print(f'Confusion matrix plot: {path}')
    return {**result, 'step': step, 'confusion_matrix': matrix, 'views': views,
            'view_accuracies': view_accuracies, 'without_ema_accuracy': raw_accuracy,
            'stored_statistics_accuracy': stored_accuracy,
            'per_class_accuracy': matrix.diagonal() / np.maximum(matrix.sum(1), 1)}
