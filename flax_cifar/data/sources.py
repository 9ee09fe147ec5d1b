"""Datasets by name: 'arrays:PATH' (the decoded form flax_cifar.data.arrays writes; no
TensorFlow), or a TFDS catalog name or 'folder:PATH' (tfds_source, the one TensorFlow user).

CIFAR-10 is 180 MB as uint8, so each split is read once into a NumPy array and then held on
the accelerator; augmentation and normalization run inside the jitted train step.
"""

from flax_cifar.data.types import ARRAYS_PREFIX, Split, dataset_path
from flax_cifar.errors import InputError


def _arrays_path(dataset: str) -> str | None:
    return dataset_path(dataset, ARRAYS_PREFIX)


def _tfds_source():
    """The TFDS reader, or one line saying how to do without it."""
    try:
        from flax_cifar.data import tfds_source
    except ImportError as e:
        if e.name not in ('tensorflow', 'tensorflow_datasets'):
            raise
        raise InputError(
            f'reading a TFDS or folder dataset needs {e.name}, which is not installed: '
            f"pip install -e '.[tfds]', or write the dataset as arrays where it is "
            f'(python -m flax_cifar.data.to_arrays) and use '
            f'--config.data.dataset=arrays:PATH') from None
    return tfds_source


def num_examples(dataset: str, split: str, data_dir: str | None = None) -> int:
    """The size of `split`, known before anything is decoded."""
    path = _arrays_path(dataset)
    if path is not None:
        from flax_cifar.data import arrays
        return arrays.num_examples(path, split)
    return _tfds_source().num_examples(dataset, split, data_dir)


def load_split(dataset: str, split: str, data_dir: str | None = None,
               cache_dir: str | None = '', rows: tuple[int, int] | None = None) -> Split:
    """Rows [start, stop) of `split` of `dataset` as uint8 arrays (rows=None: all of it);
    only those rows are read. `cache_dir` keeps decoded folders (tfds_source.load_split)."""
    path = _arrays_path(dataset)
    if path is not None:
        from flax_cifar.data import arrays
        return arrays.load_split(path, split, rows)
    return _tfds_source().load_split(dataset, split, data_dir, cache_dir, rows)


def class_names(dataset: str, data_dir: str | None = None) -> list[str]:
    """Label names in label order (for folders: the class folder names, sorted)."""
    path = _arrays_path(dataset)
    if path is not None:
        from flax_cifar.data import arrays
        return arrays.class_names(path)
    return _tfds_source().class_names(dataset, data_dir)
