"""One live run per workdir: a lock on `<workdir>/lock`, naming its holder.

Locally the lock is `fcntl.flock` on a local (or NFS) file: the kernel drops it when the
holding process dies, however it dies (`kill -9` included), so a stale lock never blocks the
rerun that resumes. The file itself stays, holding the last holder's host and process id.

On Cloud Storage (gs://) it is a lease (`GcsLease`): an object created only where none exists
(a generation precondition) and renewed by its holder every few seconds.
"""
import fcntl
import json
import os
import socket
import threading
import time

from flax_cifar.errors import InputError

LOCK_FILE = 'lock'


def _holder_record() -> str:
    return json.dumps({'host': socket.gethostname(), 'pid': os.getpid(),
                       'started': time.strftime('%Y-%m-%d %H:%M:%S')}) + '\n'


def _in_use(workdir: str, holder: str):
    return InputError(f'--workdir {workdir} is in use by another run ({holder}); wait for it '
                      f'or stop it, or use another --workdir')


def acquire(workdir: str):
    """The workdir's lock, held until its `release()`; InputError if another run holds it."""
    return GcsLease(workdir) if workdir.startswith('gs://') else WorkdirLock(workdir)


def acquire_on_chief(workdir: str):
    """Process 0 takes the lock (None elsewhere); where it is refused, every process of the
    job raises the refusal, instead of the others waiting for process 0 forever."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils
    lock = refusal = None
    if jax.process_index() == 0:
        try:
            lock = acquire(workdir)
        except InputError as e:
            refusal = e
    if jax.process_count() > 1:
        refused = multihost_utils.broadcast_one_to_all(np.int32(refusal is not None))
        if refused and refusal is None:
            refusal = InputError(f'--workdir {workdir} is in use by another run (process 0 '
                                 f'was refused its lock)')
    if refusal is not None:
        raise refusal
    return lock


class WorkdirLock:
    """Held from construction until `release()` or the process's end."""

    def __init__(self, workdir: str):
        self.file = None
        self.workdir, self.created = workdir, _first_missing(workdir)
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, LOCK_FILE)
        file = open(path, 'a+')
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = _holder(file.read())
            file.close()
            raise _in_use(workdir, holder) from None
        file.seek(0)
        file.truncate()
        file.write(_holder_record())
        file.flush()
        self.file = file

    def release(self):
        """Drops the lock; a workdir this lock created and nothing else wrote to (the run
        stopped at bad input) is removed again."""
        if self.file is None:
            return
        if self.created and os.listdir(self.workdir) == [LOCK_FILE]:
            os.remove(os.path.join(self.workdir, LOCK_FILE))
            path = os.path.abspath(self.workdir)
            while path != os.path.dirname(self.created):  # the directories it made, inner first
                os.rmdir(path)
                path = os.path.dirname(path)
        self.file.close()  # closing drops the flock
        self.file = None


def _first_missing(path: str) -> str | None:
    """The outermost directory of `path` that does not exist yet, or None."""
    path, missing = os.path.abspath(path), None
    while not os.path.exists(path):
        path, missing = os.path.dirname(path), path
    return missing


def _holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"process {holder['pid']} on host {holder['host']}, since {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return 'a process that has not written its name yet'


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class GcsLease:
    """The lock of a gs:// workdir: the object `<workdir>/lock`, created only where none
    exists and renewed every RENEW_S seconds by a thread of its holder.

    A run that finds the object held takes it over at once if the holder ran on this host
    and its process is gone (a killed run's rerun); otherwise it watches the object for
    LEASE_S seconds: a renewal means a live run (refused), none a dead one (taken over).
    Each takeover is conditional on the generation it read, so of two runs racing for a
    stale lease one wins. Other hosts' clocks are never compared.
    """
    RENEW_S = 5.0
    LEASE_S = 20.0

    def __init__(self, workdir: str):
        from google.api_core import exceptions
        from google.cloud import storage
        self._precondition_failed = (exceptions.PreconditionFailed, exceptions.NotFound)
        bucket, _, prefix = workdir[len('gs://'):].partition('/')
        name = '/'.join(p for p in (prefix.strip('/'), LOCK_FILE) if p)
        self.workdir = workdir
        self.blob = storage.Client().bucket(bucket).blob(name)
        self.generation = self._acquire()
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, daemon=True,
                                         name='workdir lease')
        self._renewer.start()

    def _write(self, generation: int) -> int:
        self.blob.upload_from_string(_holder_record(), if_generation_match=generation)
        return self.blob.generation

    def _read(self) -> tuple[int, dict] | None:
        """(generation, holder) of the lock object, or None where there is none."""
        from google.api_core import exceptions
        try:
            self.blob.reload()
            generation = self.blob.generation
            text = self.blob.download_as_text(if_generation_match=generation)
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return None
        try:
            return generation, json.loads(text)
        except ValueError:
            return generation, {}

    def _acquire(self) -> int:
        while True:
            try:
                return self._write(0)  # 0: only if no such object exists
            except self._precondition_failed:
                pass
            found = self._read()
            if found is None:  # released meanwhile: try again
                continue
            generation, holder = found
            described = _holder(json.dumps(holder))
            if holder.get('host') == socket.gethostname() and 'pid' in holder:
                if _alive(holder['pid']):
                    raise _in_use(self.workdir, described)
            elif self._renewed_within(generation, self.LEASE_S):
                raise _in_use(self.workdir, described)
            try:
                return self._write(generation)  # the holder is gone: take over its lease
            except self._precondition_failed:
                raise _in_use(self.workdir, 'another run took it first') from None

    def _renewed_within(self, generation: int, seconds: float) -> bool:
        print(f'{self.workdir}/lock is held by a run on another host; watching it for '
              f'{seconds:.0f} s to see whether that run is alive', flush=True)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(1.0)
            found = self._read()
            if found is None or found[0] != generation:
                return True
        return False

    def _renew(self):
        while not self._stop.wait(self.RENEW_S):
            try:
                self.generation = self._write(self.generation)
            except self._precondition_failed:
                print(f'WARNING: {self.workdir}/lock was taken over by another run; this run '
                      f'no longer holds the workdir', flush=True)
                return
            except Exception as e:  # a network error: the next renewal may get through
                print(f'WARNING: renewing {self.workdir}/lock failed '
                      f'({type(e).__name__}); retrying', flush=True)

    def release(self):
        if self._stop.is_set():
            return
        self._stop.set()
        self._renewer.join()
        try:
            self.blob.delete(if_generation_match=self.generation)
        except Exception:  # taken over, or gone: nothing of ours to remove
            pass
