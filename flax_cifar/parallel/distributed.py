"""Multi-host start-up: `jax.distributed.initialize` where there is more than one process.

On a Cloud TPU pod slice JAX finds the coordinator itself; elsewhere (GPU clusters, CPU
tests) the config names it. Every process then runs the same program: the train state is
replicated, each process loads only its own data shards (see data_parallel.py), each global
batch is sharded over all devices of all hosts, only process 0 prints and writes logs, and
all processes take part in Orbax saves and restores.
"""
import os

import jax
import ml_collections


def on_multihost_tpu() -> bool:
    """A TPU VM that belongs to a slice of several hosts (set by the TPU runtime)."""
    return len(os.environ.get('TPU_WORKER_HOSTNAMES', '').split(',')) > 1


def maybe_initialize(settings: ml_collections.ConfigDict) -> bool:
    """Joins the other processes if config.distributed or the platform says there are any."""
    if settings.coordinator_address:
        jax.distributed.initialize(coordinator_address=settings.coordinator_address,
                                   num_processes=settings.num_processes,
                                   process_id=settings.process_id)
        return True
    if on_multihost_tpu():
        # JAX finds a TPU slice's hosts itself. A launcher may name them instead (the stand-in
        # pod of tests/test_pod.py does): JAX reads JAX_COORDINATOR_ADDRESS, and these two.
        layout = {key: int(os.environ[name]) for key, name in (
            ('num_processes', 'JAX_NUM_PROCESSES'), ('process_id', 'JAX_PROCESS_ID'))
            if name in os.environ}
        jax.distributed.initialize(**layout)
        return True
    return False
