"""Files on local disks and on Cloud Storage (gs://) alike.

Everything the project reads and writes goes through `etils.epath`, except Orbax's arrays
(TensorStore) and TensorBoard's events (tensorboardX through google-cloud-storage). For gs://,
all three honour the standard `STORAGE_EMULATOR_HOST` (a GCS emulator, with anonymous
credentials), so a run can be pointed at an emulator as at a bucket. Needs the `gcs` extra.
"""
import logging
import os

from etils import epath


def configure_gcs(environ=os.environ) -> None:
    """Routes gs:// through clients that honour STORAGE_EMULATOR_HOST. Call before the first
    gs:// access (the package's import does)."""
    # Where TensorFlow is installed, epath reads gs:// through TF's gfile, which knows no
    # emulator; gcsfs (fsspec) does, and needs no TensorFlow.
    environ.setdefault('EPATH_USE_TF', 'false')
    # A job's processes read what the others wrote: no directory listing may come from a cache.
    import fsspec
    fsspec.config.conf.setdefault('gcs', {}).setdefault('use_listings_cache', False)
    emulator = environ.get('STORAGE_EMULATOR_HOST')
    if emulator:
        url = emulator if '://' in emulator else f'http://{emulator}'
        environ.setdefault('TENSORSTORE_GCS_HTTP_URL', url)  # Orbax's arrays
        environ.setdefault('GOOGLE_AUTH_TOKEN_FOR_TESTING', 'anonymous')  # TensorStore's token
        # gcsfs's bucket-layout probe calls a control API that emulators lack: it only warns.
        environ.setdefault('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', 'false')
        # Nor do they have the move API: gcsfs copies and deletes instead, after a warning.
        logging.getLogger('gcsfs').setLevel(logging.ERROR)


def default_cache_dir() -> str:
    """Where decoded datasets and compiled programs are kept: $XDG_CACHE_HOME/flax_cifar."""
    return os.path.join(os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
                        'flax_cifar')


def is_remote(path: str) -> bool:
    return '://' in str(path)


def join(path: str, *parts: str) -> str:
    """os.path.join that keeps a gs:// prefix intact."""
    return '/'.join([str(path).rstrip('/'), *parts]) if is_remote(path) else os.path.join(
        path, *parts)


def write_atomic(path: str, data: bytes | str) -> None:
    """`path` holds `data` whole or keeps what it held: locally written aside and renamed;
    on Cloud Storage an object upload is already all or nothing."""
    data = data.encode() if isinstance(data, str) else data
    target = epath.Path(path)
    if is_remote(path):
        target.write_bytes(data)
        return
    temporary = epath.Path(f'{path}.{os.getpid()}.tmp')
    temporary.write_bytes(data)
    temporary.replace(target)


def move(source: str, target: str) -> None:
    """Renames a file or directory, making the target's parent; on Cloud Storage, where
    directories are only name prefixes, each object is copied and then deleted."""
    if is_remote(source):
        import fsspec
        filesystem, path = fsspec.core.url_to_fs(source)
        filesystem.mv(path, filesystem._strip_protocol(target), recursive=True)
        return
    epath.Path(target).parent.mkdir(parents=True, exist_ok=True)
    epath.Path(source).rename(target)
