"""Preemption: SIGTERM saves a checkpoint and exits 143; several processes stop together."""
import contextlib
import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class Preempted(SystemExit):
    """Raised after SIGTERM once a checkpoint is saved; exit status 143 as for SIGTERM."""

    def __init__(self, step: int):
        super().__init__(143)
        self.step = step


@contextlib.contextmanager
def sigterm_received():
    """Yields a function telling whether SIGTERM (a TPU preemption notice) has arrived."""
    received = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield received.is_set  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: received.set())
    try:
        yield received.is_set
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_agreed(preempted, at_sync_point: bool) -> bool:
    """Whether to save and stop now. One process acts on its own SIGTERM at any step;
    several agree at sync points (steps every process reaches in the same order) with
    one tiny all-gather, since a notice may reach only some of them and all must save
    the same step and leave together."""
    if jax.process_count() == 1:
        return preempted()
    return at_sync_point and bool(
        multihost_utils.process_allgather(np.int32(preempted())).any())
