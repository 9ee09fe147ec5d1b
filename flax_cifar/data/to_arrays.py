"""Decode a dataset once into the arrays form (flax_cifar.data.arrays), then train anywhere
without TensorFlow:

  python -m flax_cifar.data.to_arrays --dataset folder:/path/to/cifar10 --out /path/to/arrays
  python main.py --config configs/default.py --config.data.dataset=arrays:/path/to/arrays
"""
import argparse
import os
import sys

from etils import epath

from flax_cifar import storage
from flax_cifar.data import arrays, sources
from flax_cifar.errors import InputError


def write(dataset: str, out: str, data_dir: str | None = None,
          splits=('train', 'test')) -> dict:
    """Decodes `splits` of `dataset` (a TFDS name or folder:PATH) into the form at `out`."""
    if epath.Path(out).exists():  # before decoding anything
        raise InputError(f'--out {out} exists; give a new path (nothing was written)')
    decoded = {split: sources.load_split(dataset, split, data_dir, cache_dir=None)
               for split in splits}
    return arrays.save(out, decoded, sources.class_names(dataset, data_dir), source=dataset)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m flax_cifar.data.to_arrays',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', required=True,
                        help='a TFDS name (cifar10) or folder:/path/to/cifar10')
    parser.add_argument('--out', required=True, help='the directory to create')
    parser.add_argument('--data_dir', help="TFDS's data directory (catalog datasets)")
    parser.add_argument('--splits', default='train,test', help='comma-separated')
    args = parser.parse_args(argv)
    out = args.out if storage.is_remote(args.out) else os.path.expanduser(args.out)
    try:
        info = write(args.dataset, out, args.data_dir, tuple(args.splits.split(',')))
    except InputError as e:
        sys.exit(f'error: {e}')
    print(f"{out}: {', '.join(f'{n} {s} images' for s, n in info['splits'].items())}, "
          f"classes {', '.join(info['classes'])}; train with --config.data.dataset=arrays:{out}")


if __name__ == '__main__':
    main()
