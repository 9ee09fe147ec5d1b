"""The training process's allocator (flax_cifar/allocator.py): what it sets, where it stays
out, and the restart that applies it."""
import json
import os
import subprocess
import sys

import pytest

from flax_cifar import allocator

CPU = {'JAX_PLATFORMS': 'cpu'}


@pytest.fixture
def without_tbb(monkeypatch):
    monkeypatch.setattr(allocator, 'tbb_libraries', lambda: [])


def test_tbb_where_installed_and_its_cache_kept():
    libraries = allocator.tbb_libraries()
    if not libraries:
        pytest.skip('the tbb package is installed on Linux x86-64 only')
    added = allocator.settings(CPU)
    assert added['LD_PRELOAD'].split(':') == libraries
    assert [os.path.basename(path) for path in libraries] == ['libtbbmalloc.so.2',
                                                              'libtbbmalloc_proxy.so.2']
    assert all(os.path.isfile(path) for path in libraries)
    assert added['TBB_MALLOC_SET_HUGE_SIZE_THRESHOLD'] == str(2 ** 20)
    own = allocator.settings({**CPU, 'TBB_MALLOC_SET_HUGE_SIZE_THRESHOLD': '0'})
    assert 'TBB_MALLOC_SET_HUGE_SIZE_THRESHOLD' not in own  # the user's kept
    limit = int(added[allocator.LIMIT])  # half of what is free: never the whole machine
    assert 0 < limit <= allocator.available_memory() * 0.6
    assert allocator.LIMIT not in allocator.settings({**CPU, allocator.LIMIT: str(2 ** 33)})


def test_a_limit_that_is_not_a_number_stops_with_its_name():
    process = subprocess.run([sys.executable, '-c', REPORT],
                             env={**os.environ, **CPU, allocator.LIMIT: '8G'},
                             capture_output=True, text=True, timeout=60)
    assert process.returncode == 1
    assert process.stderr.strip() == "error: FLAX_CIFAR_MALLOC_LIMIT='8G': give a number of bytes"


def test_huge_pages_where_tbb_is_missing_beside_the_users_tunables(without_tbb):
    assert allocator.settings(CPU) == {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}
    assert allocator.settings({**CPU, 'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}) == {
        'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'}


@pytest.mark.parametrize('environ', [
    {**CPU, 'FLAX_CIFAR_MALLOC': 'system'},        # turned off
    {**CPU, 'LD_PRELOAD': '/usr/lib/libjemalloc.so.2'},   # the user's own allocator
    {**CPU, 'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'},  # the user's own choice
    {'JAX_PLATFORMS': 'tpu'}, {'JAX_PLATFORMS': 'cuda,cpu'},  # activations on the device
])
def test_nothing_changes_where_it_should_not(environ):
    assert allocator.settings(environ) == {}


def test_nothing_changes_off_linux_glibc_or_beside_an_accelerator_plugin(monkeypatch):
    assert allocator.settings(CPU)
    monkeypatch.setattr(allocator.platform, 'system', lambda: 'Darwin')
    assert allocator.settings(CPU) == {}
    monkeypatch.setattr(allocator.platform, 'system', lambda: 'Linux')
    monkeypatch.setattr(allocator.platform, 'libc_ver', lambda: ('', ''))  # musl
    assert allocator.settings(CPU) == {}
    monkeypatch.undo()
    monkeypatch.setattr(allocator, 'find_spec', lambda name: name == 'libtpu' or None)
    assert allocator.settings({}) == {}  # no JAX_PLATFORMS, libtpu installed


REPORT = ("import json, os; from flax_cifar import allocator; allocator.reexec(); "
          "maps = open('/proc/self/maps').read(); "
          "print(json.dumps([os.getpid(), dict(os.environ), 'tbbmalloc_proxy' in maps, "
          "allocator.apply_limit()]))")


@pytest.mark.parametrize('switch', ['', 'system'])
def test_the_process_restarts_once_with_the_allocator_loaded(switch):
    """Same PID (a parent's signals still reach it), no second restart, the settings in its
    environment and TBB's malloc mapped into it, unless switched off."""
    # A limit of the user's (the default, half the memory free, moves between processes).
    env = {**os.environ, **CPU, allocator.SWITCH: switch, allocator.LIMIT: str(2 ** 32)}
    env.pop('LD_PRELOAD', None)
    env.pop('GLIBC_TUNABLES', None)
    expected = allocator.settings(env)
    assert bool(expected) != bool(switch)
    process = subprocess.Popen([sys.executable, '-c', REPORT], env=env, stdout=subprocess.PIPE,
                               text=True)
    pid, environ, tbb_mapped, limited = json.loads(process.communicate(timeout=60)[0])
    assert process.returncode == 0
    assert pid == process.pid
    assert {key: environ.get(key) for key in expected} == expected
    assert tbb_mapped == ('LD_PRELOAD' in expected)
    assert limited == tbb_mapped  # TBB told its soft limit wherever it is loaded
