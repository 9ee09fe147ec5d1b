"""Datasets read through TensorFlow Datasets: a TFDS catalog name or a local ImageFolder.

Imported only for such datasets (data.sources dispatches), so that runs from the decoded
arrays (flax_cifar.data.arrays) never import TensorFlow.
"""
import functools
import hashlib
import inspect
import logging
import os
import socket
import time
import urllib.parse
import zipfile

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging as absl_logging

from flax_cifar import errors
from flax_cifar.data.types import FOLDER_PREFIX, IMAGE_SHAPE, Split, dataset_path
from flax_cifar.errors import InputError
from flax_cifar.storage import default_cache_dir

tf.config.set_visible_devices([], 'GPU')  # TF only reads files; the accelerators are JAX's.


class _NotDownloadedYet(logging.Filter):
    """Drops TFDS's warning that a catalog dataset not yet downloaded has no
    dataset_info.json: the download follows, or the one-line hint of `_builder` if offline."""

    def filter(self, record):
        return 'has no dataset_info.json' not in record.getMessage()


absl_logging.get_absl_logger().addFilter(_NotDownloadedYet())

# What TFDS's ImageFolder reads; other files in the class folders are ignored.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


def _folder_root(dataset: str) -> str | None:
    return dataset_path(dataset, FOLDER_PREFIX)


def _image_files(directory: str) -> list[str]:
    return sorted(os.path.join(directory, f) for f in os.listdir(directory)
                  if f.lower().endswith(IMAGE_EXTENSIONS))


def _check_folder_layout(root: str):
    """Every split/<class> folder must hold images: an empty one is a mistake, not a class."""
    if not os.path.isdir(root):
        raise InputError(f'config.data.dataset: folder {root!r} does not exist')
    for split in sorted(os.listdir(root)):
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            continue
        for label in sorted(os.listdir(split_dir)):
            class_dir = os.path.join(split_dir, label)
            if os.path.isdir(class_dir) and not _image_files(class_dir):
                raise InputError(f'config.data.dataset: class folder {class_dir} has no images '
                                 f'({", ".join(IMAGE_EXTENSIONS)})')


def _find_bad_image(root: str, split: str) -> str | None:
    """'<file>: <what is wrong>' for the first image of the split that cannot be used."""
    split_dir = os.path.join(root, split)
    for label in sorted(os.listdir(split_dir)):
        class_dir = os.path.join(split_dir, label)
        if not os.path.isdir(class_dir):
            continue
        for path in _image_files(class_dir):
            try:
                image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                           expand_animations=False)
            except tf.errors.OpError as e:
                return f'{path}: not a readable image ({e.message.splitlines()[0][:120]})'
            if tuple(image.shape) != IMAGE_SHAPE:
                return (f'{path}: is {image.shape[1]}x{image.shape[0]}, expected 32x32 '
                        f'(resize the dataset first)')
    return None


def _tfds_download():
    return inspect.getattr_static(tfds.core.DatasetBuilder, 'download_and_prepare')


_TFDS_DOWNLOAD = _tfds_download()  # tfds.testing.mock_data replaces it: nothing downloads


@functools.lru_cache(maxsize=8)
def _builder(dataset: str, data_dir: str | None):
    root = _folder_root(dataset)
    if root is not None:
        _check_folder_layout(root)
        return tfds.folder_dataset.ImageFolder(root, shape=IMAGE_SHAPE)
    builder = tfds.builder(dataset, data_dir=data_dir)
    offline_hint = (' Offline? Train from a local copy with '
                    '--config.data.dataset=folder:/path/to/cifar10 (layout '
                    'root/{train,test}/<class>/*.png|jpg).')
    # TFDS retries a download for minutes before it fails: a few seconds tell the same.
    host = urllib.parse.urlparse(builder.info.homepage or '').hostname
    downloads = _tfds_download() is _TFDS_DOWNLOAD
    if host and downloads and not builder.is_prepared() and not _reachable(host):
        raise InputError(f'config.data.dataset={dataset!r} is not in {builder.data_dir} and '
                         f'{host} cannot be reached to download it.' + offline_hint)
    try:
        builder.download_and_prepare()
    except Exception as e:  # TFDS raises a zoo of network and file errors here.
        raise InputError(
            f'config.data.dataset={dataset!r}: TFDS could not download or prepare it '
            f'({type(e).__name__}: {str(e).splitlines()[0][:200]}).' + offline_hint) from None
    return builder


def _reachable(host: str, timeout_s: float = 5.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False



def _folder_digest(root: str, split: str, rows: tuple[int, int] | None) -> str:
    """Changes when any image of the split is added, removed, renamed or rewritten."""
    # Whole splits keep the key that earlier versions cached them under.
    key = f'{os.path.abspath(root)}\0{split}' + (f'\0{rows}' if rows else '')
    digest = hashlib.sha256(key.encode())
    split_dir = os.path.join(root, split)
    for label in sorted(os.listdir(split_dir)):
        class_dir = os.path.join(split_dir, label)
        if os.path.isdir(class_dir):
            for entry in sorted(os.scandir(class_dir), key=lambda e: e.name):
                if entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    stat = entry.stat()
                    digest.update(f'{label}/{entry.name}:{stat.st_size}:{stat.st_mtime_ns}\n'
                                  .encode())
    return digest.hexdigest()[:32]


def _checked_builder(dataset: str, split: str, data_dir: str | None):
    builder = _builder(dataset, data_dir)
    if _folder_root(dataset) is not None and split not in builder.info.splits:
        raise InputError(f'config.data.dataset={dataset!r} has no {split!r} split; '
                         f'it has {sorted(builder.info.splits)}')
    return builder


def num_examples(dataset: str, split: str, data_dir: str | None = None) -> int:
    """The size of `split`, known before anything is decoded."""
    builder = _checked_builder(dataset, split, data_dir)
    if split in builder.info.splits:
        return builder.info.splits[split].num_examples
    # TFDS's mock data (tests) comes without split metadata: count the examples instead.
    return int(builder.as_dataset(split=split).cardinality())


def load_split(dataset: str, split: str, data_dir: str | None = None,
               cache_dir: str | None = '', rows: tuple[int, int] | None = None) -> Split:
    """Rows [start, stop) of `split` of `dataset` ('cifar10', or 'folder:/path') as uint8
    arrays; rows=None: the whole split. Only those rows are read and decoded.

    Folder datasets are decoded once and kept as .npz in `cache_dir` (None: the default
    cache directory; '': no cache), keyed by every file's name, size and mtime and by
    `rows`: decoding 60,000 JPEGs takes longer than compiling the step.
    """
    builder = _checked_builder(dataset, split, data_dir)
    if rows is not None and tuple(rows) == (0, num_examples(dataset, split, data_dir)):
        rows = None  # the whole split: one cache entry however it was asked for
    root = _folder_root(dataset)
    cache_path = None
    if root is not None and cache_dir != '':
        cache_dir = os.path.expanduser(cache_dir or default_cache_dir())
        cache_path = os.path.join(cache_dir, f'{split}-{_folder_digest(root, split, rows)}.npz')
        if os.path.exists(cache_path):
            cached = _read_cache(cache_path)
            if cached is not None:
                return cached
    if root is not None and jax.process_index() == 0:
        count = (rows[1] - rows[0]) if rows else num_examples(dataset, split, data_dir)
        print(f'Decoding {count:,} images of {split} from {root} '
              f'({"cached for the next run" if cache_path else "not cached"})', flush=True)
    split_arrays = _decode_rows(builder, dataset, split, rows)
    if cache_path:
        os.makedirs(cache_dir, exist_ok=True)
        temporary = f'{cache_path}.{os.getpid()}.tmp.npz'
        np.savez(temporary, images=split_arrays.images, labels=split_arrays.labels)
        os.replace(temporary, cache_path)  # atomic: a killed run leaves no half cache
    return split_arrays


def _read_cache(path: str) -> Split | None:
    """The cached split, or None (the file set aside, to be rebuilt) if it cannot be read."""
    try:
        with np.load(path) as cached:
            split = Split(cached['images'], cached['labels'])
        if split.images.ndim != 4 or len(split.images) != len(split.labels):
            raise ValueError(f'images {split.images.shape} and labels {split.labels.shape}')
        return split
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        errors.set_aside(path, f'{path}.damaged.{int(time.time())}',
                         f'{type(e).__name__}: {str(e)[:120]}; decoding the folder again')
        return None


def _folder_rows(builder, split: str, rows: tuple[int, int] | None) -> tf.data.Dataset:
    """(image, label) of ImageFolder's rows [start, stop), decoding only those files.

    ImageFolder has no subsplit API ('train[a:b]'), and skipping in its dataset would still
    decode the skipped images; its example list (in its own fixed, shuffled order) is the
    one source of the row order, so that is what is sliced here.
    """
    examples = builder._split_examples[split][slice(*rows) if rows else slice(None)]
    label_names = builder.info.features['label']
    ds = tf.data.Dataset.from_tensor_slices(
        ([e.image_path for e in examples],
         np.array([label_names.str2int(e.label) for e in examples], np.int64)))
    # Grayscale and RGBA files are decoded to RGB (channels=3), as documented.
    return ds.map(lambda path, label: (tf.io.decode_image(tf.io.read_file(path), channels=3,
                                                          expand_animations=False), label),
                  num_parallel_calls=tf.data.AUTOTUNE)


def _decode_rows(builder, dataset: str, split: str, rows: tuple[int, int] | None) -> Split:
    if _folder_root(dataset) is not None:
        ds = _folder_rows(builder, split, rows)
    else:
        subsplit = f'{split}[{rows[0]}:{rows[1]}]' if rows else split
        ds = builder.as_dataset(split=subsplit, as_supervised=True, shuffle_files=False)
    images, labels = [], []
    try:
        for image, label in tfds.as_numpy(ds.batch(4096)):
            images.append(image)
            labels.append(label)
    except tf.errors.OpError:
        culprit = _folder_root(dataset) and _find_bad_image(_folder_root(dataset), split)
        if culprit:
            raise InputError(f'config.data.dataset: {culprit}') from None
        raise
    if not images:
        return Split(np.zeros((0, *IMAGE_SHAPE), np.uint8), np.zeros((0,), np.int32))
    return Split(np.concatenate(images).astype(np.uint8),
                 np.concatenate(labels).astype(np.int32))


def class_names(dataset: str, data_dir: str | None = None) -> list[str]:
    """Label names in label order (for folders: the class folder names, sorted)."""
    return list(_builder(dataset, data_dir).info.features['label'].names)
