"""Where data and computation live: one mesh of hosts x devices, each host's rows on its own
devices, and global batches gathered where the rows are.

The training split is cut into `num_shards` contiguous shards of equal size; each process
loads only its own shards (jax.process_index()) and keeps them on its devices. Every step
takes batch_size / num_shards rows from each shard, in an order that is a function of
(seed, epoch) alone, so a fixed number of shards gives the same global batches on 1 process
or on 64. With one shard the order is exactly the single-process order.
"""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

HOSTS, DEVICES = 'hosts', 'devices'
BATCH = P((HOSTS, DEVICES))  # a global batch: split over every device of every host
BY_HOST = P(HOSTS)           # each host's rows on its own devices (replicated over them)


def create_mesh() -> Mesh:
    """All devices as (processes, devices per process): row p holds process p's devices."""
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(devices).reshape(jax.process_count(), -1), (HOSTS, DEVICES),
                axis_types=(AxisType.Auto, AxisType.Auto))


def num_shards(data: ml_collections.ConfigDict) -> int:
    """The training split's shards (config.data.shards; 0: one per process)."""
    return data.shards or jax.process_count()


def host_rows(num_examples: int, shards: int) -> tuple[int, int]:
    """[start, stop) of the training rows this process loads: its shards, contiguous."""
    per_host = shards // jax.process_count() * (num_examples // shards)
    start = jax.process_index() * per_host
    return start, start + per_host


def padded_host_rows(num_examples: int) -> tuple[int, int, int]:
    """(start, stop, padded length) of this process's evaluation rows: an equal share each."""
    per_host = math.ceil(num_examples / jax.process_count())
    start = min(jax.process_index() * per_host, num_examples)
    return start, min(start + per_host, num_examples), per_host


def by_host(mesh: Mesh, local: np.ndarray) -> jax.Array:
    """The global array whose block p is process p's `local` rows (all of equal length)."""
    return jax.make_array_from_process_local_data(NamedSharding(mesh, BY_HOST), local)


def shard_orders(rng: jax.Array, num_examples: int, shards: int) -> np.ndarray:
    """(shards, shard length): shard s's local row order, one permutation restricted to it."""
    shard_length = num_examples // shards
    permutation = np.asarray(jax.random.permutation(rng, num_examples))
    kept = permutation[permutation < shards * shard_length]  # the remainder rows sit out
    by_shard = kept[np.argsort(kept // shard_length, kind='stable')]
    return (by_shard.reshape(shards, shard_length)
            - np.arange(shards)[:, None] * shard_length).astype(np.int32)


def take_rows(mesh: Mesh, arrays, local_ids: jax.Array):
    """arrays[ids] gathered on each host from its own rows, nothing crossing hosts.

    `arrays` are sharded BY_HOST; `local_ids` is (processes, k): row p indexes process p's
    rows. Returns (processes * k, ...) arrays sharded BY_HOST.
    """
    def take(local_arrays, ids):
        return jax.tree.map(lambda x: x[ids[0]], local_arrays)
    return jax.shard_map(take, mesh=mesh, in_specs=BY_HOST, out_specs=BY_HOST)(arrays,
                                                                              local_ids)


def shard_batch_ids(orders: jax.Array, index, per_shard: int, hosts: int) -> jax.Array:
    """(hosts, rows per host): local row ids of batch `index` given the shards' orders."""
    shards, shard_length = orders.shape
    ids = jax.lax.dynamic_slice_in_dim(orders, index * per_shard, per_shard, axis=1)
    first_row = (jnp.arange(shards) % (shards // hosts)) * shard_length  # within its host
    return (ids + first_row[:, None]).reshape(hosts, -1)


def host_block(rows: np.ndarray) -> np.ndarray:
    """Process p's block of a global array that every process computed whole."""
    per_host = len(rows) // jax.process_count()
    return rows[jax.process_index() * per_host:(jax.process_index() + 1) * per_host]


def split_over_devices(mesh: Mesh, batch):
    """Shards a global batch over all devices; one that does not divide (the last test batch
    of an odd size) stays split by host only, as jit cannot shard it unevenly."""
    length = len(jax.tree.leaves(batch)[0])
    spec = BATCH if length % mesh.size == 0 else BY_HOST
    return jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, spec))
