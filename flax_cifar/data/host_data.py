"""Each process's rows of the data, read, decoded and placed on its own devices."""
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from flax_cifar import streams
from flax_cifar.data import augment, sources, types
from flax_cifar.parallel import data_parallel


def epoch_order(seed: int, epoch: int, num_examples: int, shards: int = 1) -> np.ndarray:
    """(shards, shard length) local row orders of one epoch: a function of (seed, epoch)."""
    rng = jax.random.fold_in(streams.key(seed, streams.EPOCH_ORDER), epoch)
    return data_parallel.shard_orders(rng, num_examples, shards)


class HostSplit(NamedTuple):
    """An evaluation split, each process's equal share on its own devices."""
    images: jax.Array  # (processes * rows_per_host, 32, 32, 3) uint8, sharded by host
    labels: jax.Array
    valid: jax.Array   # False on the rows that pad a process's share to the longest one


def host_split(mesh: Mesh, local: types.Split, rows_per_host: int) -> HostSplit:
    """Pads this process's rows to `rows_per_host` (repeating one) and places them."""
    pad = rows_per_host - len(local.labels)
    valid = np.arange(rows_per_host) < len(local.labels)
    padded = [np.concatenate([x, np.repeat(x[-1:] if len(x) else np.zeros_like(x[:1]), pad, 0)])
              for x in (local.images, local.labels)]
    return HostSplit(*(data_parallel.by_host(mesh, x) for x in (*padded, valid)))


class HostData(NamedTuple):
    """What one process holds: its training shards and test rows, on its own devices."""
    train_images: jax.Array  # this process's training shards, sharded by host
    train_labels: jax.Array
    num_train: int           # training examples in the whole split, all processes together
    shards: int              # config.data.shards, or one per process
    test: HostSplit
    class_names: list[str]


def load_host_data(config: ml_collections.ConfigDict, mesh: Mesh) -> HostData:
    """Reads and decodes this process's rows only, and puts them on its devices."""
    shards = data_parallel.num_shards(config.data)
    num_train = sources.num_examples(config.data.dataset, 'train', config.data.tfds_data_dir)
    train_rows = data_parallel.host_rows(num_train, shards)
    *test_rows, test_rows_per_host = data_parallel.padded_host_rows(
        sources.num_examples(config.data.dataset, 'test', config.data.tfds_data_dir))
    train, test = (sources.load_split(config.data.dataset, split, config.data.tfds_data_dir,
                                      config.data.cache_dir, rows)
                   for split, rows in (('train', train_rows), ('test', test_rows)))
    train_images = train.images
    if 'alternating_flip' in augment.active_ops(config):
        train_images = augment.mirror_half(streams.key(config.seed, streams.FLIP), train_images,
                                           train_rows[0], num_train)
    if jax.process_count() > 1:
        print(f'Process {jax.process_index()} of {jax.process_count()} holds training rows '
              f'{train_rows[0]}:{train_rows[1]} and test rows {test_rows[0]}:{test_rows[1]}',
              flush=True)
    return HostData(data_parallel.by_host(mesh, train_images),
                    data_parallel.by_host(mesh, train.labels), num_train, shards,
                    host_split(mesh, test, test_rows_per_host),
                    sources.class_names(config.data.dataset, config.data.tfds_data_dir))
