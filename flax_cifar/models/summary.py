"""The seed-style summary table: every layer's output shape, parameters and receptive field."""
import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from flax_cifar.models.kernels import DepthwiseConv, PointwiseConv
from flax_cifar.models.layers import Bias, Dropout, Pool, Scale


def param_count(params) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


@dataclasses.dataclass
class LayerRow:
    path: str
    kind: str
    output_shape: tuple
    params: int
    receptive_field: int


# Modules that get a row of their own: the leaves a reader thinks of as layers.
LEAF_LAYERS = (nn.Conv, DepthwiseConv, PointwiseConv, nn.Dense, nn.BatchNorm, nn.LayerNorm,
               Dropout, Pool, Scale, Bias)
# Leaves named branch<k>_... under one module are parallel branches (SplitBlock's groups).
BRANCH = re.compile(r'branch(\d+)_')


def _kernel_geometry(module) -> tuple[int, int, int]:
    """(kernel, stride, dilation) along one spatial axis; (1, 1, 1) for pointwise layers."""
    first = lambda v: 1 if v is None else (v if isinstance(v, int) else v[0])
    if isinstance(module, (nn.Conv, DepthwiseConv)):
        return module.kernel_size[0], first(module.strides), first(module.kernel_dilation)
    if isinstance(module, Pool):
        return module.window, module.stride, 1
    return 1, 1, 1


def layer_table(model: nn.Module, input_shape=(32, 32, 3)) -> list[LayerRow]:
    """One row per leaf layer in call order, with shapes, parameters and receptive field.

    The receptive field grows along the call order by (dilation * (kernel - 1)) times the
    product of the strides before it. Residual shortcuts here are identities, so the main
    path's field is the network's field.
    """
    calls = []

    def record(module, method_name):
        if method_name == '__call__' and isinstance(module, LEAF_LAYERS):
            calls.append(module)
            return True
        return False

    x = jnp.zeros((1, *input_shape), jnp.float32)

    def run(x):
        variables = model.init(jax.random.key(0), x)
        _, state = model.apply(variables, x, capture_intermediates=record,
                               mutable=['intermediates'])
        return variables['params'], state['intermediates']

    params, intermediates = jax.eval_shape(run, x)  # shapes only: nothing is computed
    rows, field, jump = [], 1, 1
    fork, branch, widest = None, None, 1  # (parent path, field at the fork) within branches
    for module in calls:
        path = module.scope.path
        match = BRANCH.match(path[-1])
        if match and (fork is None or fork[0] != path[:-1]):
            fork, widest = (path[:-1], field), field
        elif not match and fork is not None:  # the branches join: the widest one's field
            field, fork, branch = widest, None, None
        if match and match.group(1) != branch:  # each branch grows from the fork
            field, branch = fork[1], match.group(1)
        kernel, stride, dilation = _kernel_geometry(module)
        field += dilation * (kernel - 1) * jump
        jump *= stride
        widest = max(widest, field)
        node_out, node_params = intermediates, params
        for key in path:
            node_out = node_out[key]
            node_params = node_params.get(key, {}) if isinstance(node_params, dict) else {}
        rows.append(LayerRow('/'.join(path), type(module).__name__,
                             tuple(node_out['__call__'][0].shape[1:]),
                             param_count(node_params), field))
    return rows


def summarize(model: nn.Module, input_shape=(32, 32, 3), is_frozen=lambda path: False) -> str:
    """The seed's summary table, plus each layer's receptive field in input pixels; the
    parameters for whose path (a tuple of names) `is_frozen` holds count as not trainable."""
    rows = layer_table(model, input_shape)
    width = max(len(f'{r.path} ({r.kind})') for r in rows) + 2
    rule = '=' * (width + 44)
    lines = [rule, f"{'Layer (type)':>{width}}{'Output Shape':>22}{'Param #':>12}{'RF':>10}", rule]
    for r in rows:
        shape = str([-1, *r.output_shape])
        lines.append(f"{f'{r.path} ({r.kind})':>{width}}{shape:>22}{r.params:>12,}"
                     f"{f'{r.receptive_field}x{r.receptive_field}':>10}")
    params = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                               jnp.zeros((1, *input_shape))))['params']
    flat = traverse_util.flatten_dict(params)
    total = sum(int(np.prod(p.shape)) for p in flat.values())
    trainable = sum(int(np.prod(p.shape)) for path, p in flat.items() if not is_frozen(path))
    lines += [rule, f'Total params: {total:,}', f'Trainable params: {trainable:,}',
              f'Receptive field: {rows[-1].receptive_field}x{rows[-1].receptive_field} pixels',
              rule]
    return '\n'.join(lines)
