"""Training curves from a workdir's metrics.jsonl: `python -m flax_cifar.plots WORKDIR`.

Writes `curves.png` (loss, accuracy and learning rate per epoch) into the workdir; training
also does this at its end.
"""
import io

from etils import epath

from flax_cifar import storage
from flax_cifar.workdir import metric_writers


def figure(**kwargs):
    """A matplotlib Figure of its own, no pyplot: it draws without a display or global
    state, into a file or a notebook alike. matplotlib is imported when first drawn: runs
    that draw nothing (predict, a killed run) skip its import."""
    from matplotlib.figure import Figure
    return Figure(**kwargs)


def save(fig, path: str, dpi: int = 110) -> str:
    with epath.Path(path).open('wb') as f:  # local or gs://
        fig.savefig(f, format='png', dpi=dpi)
    return path


def curves_figure(records: list[dict]):
    """Loss, accuracy and learning rate per epoch from metrics.jsonl's records."""
    epochs = [r['epoch'] + 1 for r in records]
    fig = figure(figsize=(15, 4))
    loss, accuracy, rate = fig.subplots(1, 3)
    for split in ('train', 'test'):
        loss.plot(epochs, [r[f'{split}_loss'] for r in records], 'o-', label=split)
        accuracy.plot(epochs, [100 * r[f'{split}_accuracy'] for r in records], 'o-', label=split)
    best = max(records, key=lambda r: r['test_accuracy'])
    accuracy.annotate(f"{100 * best['test_accuracy']:.2f}%",
                      (best['epoch'] + 1, 100 * best['test_accuracy']),
                      textcoords='offset points', xytext=(0, -14), ha='center')  # inside
    rate.plot(epochs, [r['learning_rate'] for r in records], 'o-')
    for axis, title in ((loss, 'loss'), (accuracy, 'accuracy (%)'),
                        (rate, 'learning rate at epoch end')):
        axis.set_title(title)
        axis.set_xlabel('epoch')
        axis.xaxis.get_major_locator().set_params(integer=True)  # epochs, not 1.25
        axis.grid(alpha=0.3)
    loss.legend()
    accuracy.legend()
    fig.tight_layout()
    return fig


def plot_curves(workdir: str) -> str | None:
    """Writes <workdir>/curves.png from <workdir>/metrics.jsonl; its path, or None if there
    is no finished epoch to plot."""
    path = f'{workdir}/metrics.jsonl'
    records = metric_writers.read_records(path) if epath.Path(path).exists() else []
    if not records:
        return None
    return save(curves_figure(records), f'{workdir}/curves.png')


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog='python -m flax_cifar.plots',
                                     description='Writes WORKDIR/curves.png from its '
                                                 'metrics.jsonl.')
    parser.add_argument('workdir')
    workdir = parser.parse_args(argv).workdir
    print(plot_curves(workdir) or f'{workdir}: no finished epoch in metrics.jsonl')


if __name__ == '__main__':
    main()


def plot_frontier(rows: list[dict], root: str) -> str | None:
    """Mean test accuracy against parameters and against training minutes, a point a run."""
    done = [r for r in rows if r['mean_accuracy'] is not None]
    if not done:
        return None
    fig = figure(figsize=(13, 5))
    axes = fig.subplots(1, 2)
    for axis, key, label in ((axes[0], 'params', 'parameters'),
                             (axes[1], 'mean_minutes', 'training minutes (mean of seeds)')):
        for row in done:
            axis.plot(row[key], row['mean_accuracy'], 'o')
            axis.annotate(row['name'], (row[key], row['mean_accuracy']), fontsize=7,
                          textcoords='offset points', xytext=(4, 4))
        axis.set_xlabel(label)
        axis.set_ylabel('test accuracy (%)')
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path = storage.join(root, 'frontier.png')
    image = io.BytesIO()
    fig.savefig(image, format='png', dpi=110)
    storage.write_atomic(path, image.getvalue())
    return path
