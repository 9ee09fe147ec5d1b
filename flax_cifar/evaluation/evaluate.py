"""Evaluation during training: the test split on the devices, in batches, over the mesh."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from flax_cifar.data import types
from flax_cifar.data.host_data import HostSplit
from flax_cifar.evaluation.views import predict_logits
from flax_cifar.parallel import data_parallel
from flax_cifar.state import optim
from flax_cifar.state.train_state import TrainState


def eval_step(state: TrainState, batch: dict, flip: bool = False, ema: bool = True,
              translate: int = 0):
    """Summed loss and correct count over the examples whose `mask` is true."""
    logits = predict_logits(state, batch['image'], flip, ema, translate)
    mask = batch['mask']
    loss = optim.cross_entropy(logits, batch['label'])
    return {'loss_sum': jnp.sum(jnp.where(mask, loss, 0.0)),
            'correct': jnp.sum((jnp.argmax(logits, -1) == batch['label']) & mask),
            'count': jnp.sum(mask)}


def make_evaluate(mesh: Mesh, batch_size: int, flip: bool = False, translate: int = 0,
                  ema: bool = True, normalization: str = 'mean_std'):
    """evaluate(state, split) -> mean loss and accuracy; the batch step compiles once.

    flip, translate: test-time views (predict_logits); ema: the weights' moving average
    where the state keeps one.
    """
    hosts = mesh.shape[data_parallel.HOSTS]
    per_host = -(-batch_size // hosts)

    @jax.jit
    def eval_fn(state, split: HostSplit, index):
        rows_per_host = split.labels.shape[0] // hosts
        positions = index * per_host + jnp.arange(per_host)
        # The last partial batch repeats the final row instead of padding the split; the mask
        # keeps the repeats out of the sums.
        ids = jnp.broadcast_to(jnp.minimum(positions, rows_per_host - 1), (hosts, per_host))
        images, labels, valid = data_parallel.take_rows(
            mesh, (split.images, split.labels, split.valid), ids)
        batch = {'image': types.normalize(images, normalization), 'label': labels,
                 'mask': valid & jnp.tile(positions < rows_per_host, hosts)}
        return eval_step(state, data_parallel.split_over_devices(mesh, batch), flip, ema,
                         translate)

    def evaluate(state: TrainState, split: HostSplit) -> dict:
        num_batches = -(-split.labels.shape[0] // hosts // per_host)
        sums = [eval_fn(state, split, i) for i in range(num_batches)]
        totals = jax.tree.map(lambda *x: float(np.sum(x)), *jax.device_get(sums))
        return {'loss': totals['loss_sum'] / totals['count'], 'correct': int(totals['correct']),
                'count': int(totals['count']), 'accuracy': totals['correct'] / totals['count']}

    return evaluate
