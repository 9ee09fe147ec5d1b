"""One live run per workdir: an OS lock on `<workdir>/lock`, naming its holder.

The lock is `fcntl.flock` on a local (or NFS) file: the kernel drops it when the holding
process dies, however it dies (`kill -9` included), so a stale lock never blocks the rerun
that resumes. The file itself stays, holding the last holder's host and process id. A
gs:// workdir is not locked (object stores have no such lock): there, one run per workdir
is the launcher's job.
"""
import fcntl
import json
import os
import socket
import time

from flax_cifar.errors import InputError

LOCK_FILE = 'lock'


class WorkdirLock:
    """Held from construction until `release()` or the process's end."""

    def __init__(self, workdir: str):
        self.file = None
        if '://' in workdir:
            return
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
            raise InputError(f'--workdir {workdir} is in use by another run ({holder}); '
                             f'wait for it or stop it, or use another --workdir') from None
        file.seek(0)
        file.truncate()
        file.write(json.dumps({'host': socket.gethostname(), 'pid': os.getpid(),
                               'started': time.strftime('%Y-%m-%d %H:%M:%S')}) + '\n')
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
