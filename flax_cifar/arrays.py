"""The decoded-array form of a dataset: what training reads, with no TensorFlow needed.

  python -m flax_cifar.arrays --dataset folder:/path/to/cifar10 --out /path/to/cifar10-arrays
  python main.py --config configs/default.py --config.dataset=arrays:/path/to/cifar10-arrays

Decode once where TensorFlow Datasets is installed, then train, evaluate and predict anywhere
(an accelerator image without TensorFlow, a pod's hosts). The form is a directory:
  info.json                     {"format", "classes": [names in label order], "splits": {name: count}}
  <split>_images.npy            uint8, (count, 32, 32, 3), RGB
  <split>_labels.npy            int32, (count,)
Plain .npy files, so each host reads only its own rows (a memory map, or a ranged read of
a gs:// object).
"""
import argparse
import io
import json
import os
import shutil
import sys

import numpy as np
from etils import epath

from flax_cifar import input_pipeline, storage
from flax_cifar.errors import InputError

FORMAT = 'flax_cifar arrays 1'
INFO = 'info.json'


def _info(path: str) -> dict:
    info_path = storage.join(path, INFO)
    try:
        info = json.loads(epath.Path(info_path).read_text())
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
    """Rows [start, stop) of `split` (None: all), reading only those rows (locally through a
    memory map, on Cloud Storage as one ranged read)."""
    count = _checked_split(path, split)
    start, stop = rows if rows else (0, count)
    arrays = []
    for name, dtype, shape in (('images', np.uint8, (count, *input_pipeline.IMAGE_SHAPE)),
                               ('labels', np.int32, (count,))):
        file = storage.join(path, f'{split}_{name}.npy')
        try:
            arrays.append(_read_rows(file, np.dtype(dtype), shape, start, stop))
        except (OSError, ValueError) as e:
            raise InputError(f'{file}: not readable ({type(e).__name__}: {e})') from None
    return input_pipeline.Split(*arrays)


def _read_rows(file: str, dtype: np.dtype, shape: tuple, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of the .npy `file`, which must hold `dtype` and `shape`."""
    def check(found_dtype, found_shape):
        if found_dtype != dtype or tuple(found_shape) != shape:
            raise ValueError(f'{found_dtype} {tuple(found_shape)}, expected {dtype} {shape} '
                             f'({INFO} counts {shape[0]})')

    if not storage.is_remote(file):
        mapped = np.load(file, mmap_mode='r')
        check(mapped.dtype, mapped.shape)
        return np.array(mapped[start:stop])
    with epath.Path(file).open('rb') as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        found_shape, fortran_order, found_dtype = read_header(f)
        check(found_dtype, found_shape)
        if fortran_order:
            raise ValueError('Fortran-ordered array; write it with python -m flax_cifar.arrays')
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        f.seek(f.tell() + start * row_bytes)
        data = f.read((stop - start) * row_bytes)
    return np.frombuffer(data, dtype).reshape(stop - start, *shape[1:]).copy()


def write(dataset: str, out: str, data_dir: str | None = None,
          splits=('train', 'test')) -> dict:
    """Decodes `splits` of `dataset` (a TFDS name or folder:PATH) into the form at `out`."""
    if epath.Path(out).exists():  # before decoding anything
        raise InputError(f'--out {out} exists; give a new path (nothing was written)')
    decoded = {split: input_pipeline.load_split(dataset, split, data_dir, cache_dir=None)
               for split in splits}
    return save(out, decoded, input_pipeline.class_names(dataset, data_dir), source=dataset)


def save(out: str, splits: dict[str, input_pipeline.Split], classes: list[str],
         source: str = '') -> dict:
    """Writes `splits` ({name: Split}) in the form at `out` (a local path or gs://), which
    must not exist. A local `out` appears only once all is written; on Cloud Storage
    info.json, which readers need first, is written last."""
    if epath.Path(out).exists():
        raise InputError(f'--out {out} exists; give a new path (nothing was written)')
    remote = storage.is_remote(out)
    staging = out if remote else f'{out.rstrip("/")}.partial-{os.getpid()}'
    if not remote:
        os.makedirs(staging)
    try:
        for split, data in splits.items():
            for name, array in (('images', data.images.astype(np.uint8)),
                                ('labels', data.labels.astype(np.int32))):
                buffer = io.BytesIO()
                np.save(buffer, array)
                storage.write_atomic(storage.join(staging, f'{split}_{name}.npy'),
                                     buffer.getvalue())
        info = {'format': FORMAT, 'classes': list(classes), 'source': source,
                'splits': {split: len(data.labels) for split, data in splits.items()}}
        storage.write_atomic(storage.join(staging, INFO), json.dumps(info, indent=1))
        if not remote:
            os.rename(staging, out)
    except BaseException:
        if not remote:
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
    out = args.out if storage.is_remote(args.out) else os.path.expanduser(args.out)
    try:
        info = write(args.dataset, out, args.data_dir, tuple(args.splits.split(',')))
    except InputError as e:
        sys.exit(f'error: {e}')
    print(f"{out}: {', '.join(f'{n} {s} images' for s, n in info['splits'].items())}, "
          f"classes {', '.join(info['classes'])}; train with --config.dataset=arrays:{out}")


if __name__ == '__main__':
    main()
