"""The decoded-array form of a dataset: what training reads, with no TensorFlow needed.

  python -m flax_cifar.arrays --dataset folder:/path/to/cifar10 --out /path/to/cifar10-arrays
  python main.py --config configs/default.py --config.dataset=arrays:/path/to/cifar10-arrays

Decode once where TensorFlow Datasets is installed, then train, evaluate and predict anywhere
(an accelerator image without TensorFlow, a pod's hosts). The form is a directory:
  info.json                     {"format", "classes": [names in label order], "splits": {name: count}}
  <split>_images.npy            uint8, (count, 32, 32, 3), RGB
  <split>_labels.npy            int32, (count,)
Plain .npy files, so each host memory-maps the file and reads only its own rows.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

from flax_cifar import input_pipeline
from flax_cifar.errors import InputError

FORMAT = 'flax_cifar arrays 1'
INFO = 'info.json'


def _info(path: str) -> dict:
    info_path = os.path.join(path, INFO)
    try:
        with open(info_path) as f:
            info = json.load(f)
    except FileNotFoundError:
        raise InputError(f'config.dataset=arrays:{path}: no {INFO} there (write it with '
                         f'python -m flax_cifar.arrays)') from None
    except (OSError, ValueError) as e:
        raise InputError(f'{info_path}: not readable ({type(e).__name__}: {e})') from None
    if info.get('format') != FORMAT:
        raise InputError(f'{info_path}: format {info.get("format")!r}, expected {FORMAT!r}')
    return info


def _checked_split(path: str, split: str) -> int:
    splits = _info(path)['splits']
    if split not in splits:
        raise InputError(f'config.dataset=arrays:{path} has no {split!r} split; it has '
                         f'{sorted(splits)}')
    return splits[split]


def num_examples(path: str, split: str) -> int:
    return _checked_split(path, split)


def class_names(path: str) -> list[str]:
    return list(_info(path)['classes'])


def load_split(path: str, split: str,
               rows: tuple[int, int] | None = None) -> input_pipeline.Split:
    """Rows [start, stop) of `split` (None: all), reading only those rows from disk."""
    count = _checked_split(path, split)
    window = slice(*rows) if rows else slice(None)
    arrays = []
    for name, dtype, shape in (('images', np.uint8, (count, *input_pipeline.IMAGE_SHAPE)),
                               ('labels', np.int32, (count,))):
        file = os.path.join(path, f'{split}_{name}.npy')
        try:
            mapped = np.load(file, mmap_mode='r')
        except (OSError, ValueError) as e:
            raise InputError(f'{file}: not readable ({type(e).__name__}: {e})') from None
        if mapped.dtype != dtype or mapped.shape != shape:
            raise InputError(f'{file}: {mapped.dtype} {mapped.shape}, expected '
                             f'{np.dtype(dtype)} {shape} ({INFO} counts {count})')
        arrays.append(np.array(mapped[window]))
    return input_pipeline.Split(*arrays)


def write(dataset: str, out: str, data_dir: str | None = None,
          splits=('train', 'test')) -> dict:
    """Decodes `splits` of `dataset` (a TFDS name or folder:PATH) into the form at `out`,
    which must not exist: files appear there only once all are written."""
    if os.path.exists(out):
        raise InputError(f'--out {out} exists; give a new path (nothing was written)')
    names = input_pipeline.class_names(dataset, data_dir)
    staging = f'{out.rstrip("/")}.partial-{os.getpid()}'
    os.makedirs(staging)
    try:
        counts = {}
        for split in splits:
            data = input_pipeline.load_split(dataset, split, data_dir, cache_dir=None)
            np.save(os.path.join(staging, f'{split}_images.npy'), data.images)
            np.save(os.path.join(staging, f'{split}_labels.npy'), data.labels.astype(np.int32))
            counts[split] = len(data.labels)
        info = {'format': FORMAT, 'classes': names, 'splits': counts, 'source': dataset}
        with open(os.path.join(staging, INFO), 'w') as f:
            json.dump(info, f, indent=1)
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m flax_cifar.arrays',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', required=True,
                        help='a TFDS name (cifar10) or folder:/path/to/cifar10')
    parser.add_argument('--out', required=True, help='the directory to create')
    parser.add_argument('--data_dir', help="TFDS's data directory (catalog datasets)")
    parser.add_argument('--splits', default='train,test', help='comma-separated')
    args = parser.parse_args(argv)
    out = os.path.expanduser(args.out)
    try:
        info = write(args.dataset, out, args.data_dir, tuple(args.splits.split(',')))
    except InputError as e:
        sys.exit(f'error: {e}')
    print(f"{out}: {', '.join(f'{n} {s} images' for s, n in info['splits'].items())}, "
          f"classes {', '.join(info['classes'])}; train with --config.dataset=arrays:{out}")


if __name__ == '__main__':
    main()
