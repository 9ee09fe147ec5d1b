"""The CPU training process's memory allocator: one that keeps the memory it frees.

XLA:CPU allocates each step's activations and temporaries afresh, about 2 GB at batch 1024
for the default network, and glibc's malloc returns blocks that large to the kernel when
they are freed, so every step faults its memory in and the kernel zeroes it again. oneTBB's
scalable allocator (the `tbb` package, Linux x86-64) keeps freed blocks for the next step;
elsewhere on glibc, malloc is asked for transparent huge pages, 512 times fewer faults.
Measurements: docs/speed.md.

TBB's caches grow to several times what glibc's malloc holds, enough to exhaust a machine's
memory, so the restarted process tells TBB to hand them back above a soft limit:
$FLAX_CIFAR_MALLOC_LIMIT bytes, by default half the memory available when the run started.

Both are read by the dynamic loader and glibc when the process starts, so `reexec()`
restarts the process with them set, before JAX is imported. It does nothing where
FLAX_CIFAR_MALLOC=system, where the user set LD_PRELOAD, off Linux/glibc, or where JAX may
run on a GPU or TPU (their activations live on the device).
"""
import ctypes
import os
import platform
import sys
from importlib import metadata
from importlib.util import find_spec

SWITCH = 'FLAX_CIFAR_MALLOC'  # 'system': leave malloc as it is
# Objects from 1 MB up stay in TBB's cache once freed (its default returns them).
TBB_SETTINGS = {'TBB_MALLOC_SET_HUGE_SIZE_THRESHOLD': str(2 ** 20),
                'TBB_MALLOC_USE_HUGE_PAGES': '1'}
HUGE_PAGES = 'glibc.malloc.hugetlb=1'
LIMIT = 'FLAX_CIFAR_MALLOC_LIMIT'  # bytes TBB may hold before it cleans its caches
TBBMALLOC_SET_SOFT_HEAP_LIMIT = 1  # scalable_allocation_mode's parameter (oneTBB's C API)
# Packages that let JAX run on an accelerator: the allocator is then left alone.
ACCELERATOR_PACKAGES = ('libtpu', 'jax_cuda12_plugin', 'jax_cuda13_plugin', 'jax_rocm7_plugin')


def tbb_libraries() -> list[str]:
    """Paths of TBB's allocator and its malloc proxy, in load order, or [] if not installed."""
    try:
        files = metadata.distribution('tbb').files or []
    except metadata.PackageNotFoundError:
        return []
    found = {str(f).rsplit('/', 1)[-1]: f for f in files}
    names = ['libtbbmalloc.so.2', 'libtbbmalloc_proxy.so.2']
    if not all(name in found for name in names):
        return []
    return [str(metadata.distribution('tbb').locate_file(found[name]).resolve())
            for name in names]


def may_use_accelerator(environ) -> bool:
    platforms = environ.get('JAX_PLATFORMS', '')
    if platforms:
        return platforms.split(',')[0].strip() != 'cpu'
    return any(find_spec(name) is not None for name in ACCELERATOR_PACKAGES)


def settings(environ=os.environ) -> dict[str, str]:
    """The environment variables to add to `environ` (none where nothing should change)."""
    if (environ.get(SWITCH) == 'system' or environ.get('LD_PRELOAD')
            or platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc'
            or 'glibc.malloc.hugetlb' in environ.get('GLIBC_TUNABLES', '')
            or may_use_accelerator(environ)):
        return {}
    libraries = tbb_libraries()
    if libraries:  # TBB's own settings and the limit where the user gave none
        limit = {} if LIMIT in environ else {LIMIT: str(available_memory() // 2)}
        return {'LD_PRELOAD': ':'.join(libraries), **limit,
                **{k: v for k, v in TBB_SETTINGS.items() if k not in environ}}
    tunables = environ.get('GLIBC_TUNABLES')
    return {'GLIBC_TUNABLES': f'{tunables}:{HUGE_PAGES}' if tunables else HUGE_PAGES}


def available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes: what can be allocated without swapping."""
    with open('/proc/meminfo') as f:
        fields = dict(line.split(':', 1) for line in f)
    return int(fields['MemAvailable'].split()[0]) * 1024


def apply_limit(environ=os.environ) -> bool:
    """Sets TBB's soft heap limit from $FLAX_CIFAR_MALLOC_LIMIT where TBB's malloc is loaded;
    whether it did. Above the limit TBB returns its cached blocks to the system."""
    if LIMIT not in environ:
        return False
    try:
        limit = int(environ[LIMIT])
    except ValueError:
        sys.exit(f'error: {LIMIT}={environ[LIMIT]!r}: give a number of bytes')
    try:  # only where it is loaded already: never load a second allocator
        tbb = ctypes.CDLL('libtbbmalloc.so.2', mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return False
    return tbb.scalable_allocation_mode(TBBMALLOC_SET_SOFT_HEAP_LIMIT,
                                        ctypes.c_ssize_t(limit)) == 0


def reexec():
    """Restarts this process (same PID, arguments and interpreter options) with `settings()`,
    if there are any; returns where there are none (then or after the restart), with TBB's
    soft limit set where TBB is loaded."""
    added = settings()
    if not (added and sys.executable):
        apply_limit()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **added})
