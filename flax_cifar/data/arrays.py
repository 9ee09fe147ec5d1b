"""The decoded-array form of a dataset: what training reads, with no TensorFlow needed
(written by flax_cifar.data.to_arrays, or by `save`). The form is a directory:
  info.json          {"format", "classes": [names in label order], "splits": {name: count}}
  <split>_images.npy uint8, (count, 32, 32, 3), RGB
  <split>_labels.npy int32, (count,)
Plain .npy files, so each host reads only its own rows (a memory map, or a ranged read of
a gs:// object).
"""
import io
import json
import os
import shutil

import numpy as np
from etils import epath

from flax_cifar import storage
from flax_cifar.data.types import IMAGE_SHAPE, Split
from flax_cifar.errors import InputError

FORMAT = 'flax_cifar arrays 1'
INFO = 'info.json'


def _info(path: str) -> dict:
    info_path = storage.join(path, INFO)
    try:
        info = json.loads(epath.Path(info_path).read_text())
    except FileNotFoundError:
        raise InputError(f'config.data.dataset=arrays:{path}: no {INFO} there (write it with '
                         f'python -m flax_cifar.data.to_arrays)') from None
    except (OSError, ValueError) as e:
        raise InputError(f'{info_path}: not readable ({type(e).__name__}: {e})') from None
    if info.get('format') != FORMAT:
        raise InputError(f'{info_path}: format {info.get("format")!r}, expected {FORMAT!r}')
    return info


def _checked_split(path: str, split: str) -> int:
    splits = _info(path)['splits']
    if split not in splits:
        raise InputError(f'config.data.dataset=arrays:{path} has no {split!r} split; it has '
                         f'{sorted(splits)}')
    return splits[split]


def num_examples(path: str, split: str) -> int:
    return _checked_split(path, split)


def class_names(path: str) -> list[str]:
    return list(_info(path)['classes'])


def load_split(path: str, split: str,
               rows: tuple[int, int] | None = None) -> Split:
    """Rows [start, stop) of `split` (None: all), reading only those rows (locally through a
    memory map, on Cloud Storage as one ranged read)."""
    count = _checked_split(path, split)
    start, stop = rows if rows else (0, count)
    arrays = []
    for name, dtype, shape in (('images', np.uint8, (count, *IMAGE_SHAPE)),
                               ('labels', np.int32, (count,))):
        file = storage.join(path, f'{split}_{name}.npy')
        try:
            arrays.append(_read_rows(file, np.dtype(dtype), shape, start, stop))
        except InputError:
            raise
        except (OSError, ValueError) as e:
            raise InputError(f'{file}: not readable ({type(e).__name__}: {e})') from None
    return Split(*arrays)


def _read_rows(file: str, dtype: np.dtype, shape: tuple, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of the .npy `file`, which must hold `dtype` and `shape`."""
    def check(found_dtype, found_shape):
        if found_dtype != dtype or tuple(found_shape) != shape:
            raise InputError(f'{file}: {found_dtype} {tuple(found_shape)}, expected {dtype} '
                             f'{shape} ({INFO} counts {shape[0]})')

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
            raise ValueError('Fortran-ordered array; write it with flax_cifar.data.to_arrays')
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        f.seek(f.tell() + start * row_bytes)
        data = f.read((stop - start) * row_bytes)
    return np.frombuffer(data, dtype).reshape(stop - start, *shape[1:]).copy()


def save(out: str, splits: dict[str, Split], classes: list[str],
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
