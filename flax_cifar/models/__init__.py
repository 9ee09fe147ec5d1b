"""The networks, by name: `create_model(config.model, **config.model_args)`.

Each family is one module here; a new one is a module and a line in MODELS. A network is a
`layers.Network` (num_classes, dtype, depthwise_implementation) called as
`model(images, train=...)` on normalized NHWC images, returning float32 logits; its batch
statistics, if any, live in the 'batch_stats' collection and its dropout draws from the
'dropout' stream. Everything else a run needs of it (which layer is whitened, frozen, or
learns faster) is named in the config by parameter path, not by the network.
"""
import dataclasses

import flax.linen as nn

from flax_cifar.errors import InputError
from flax_cifar.models.airnet import AirNet
from flax_cifar.models.dsresnet import DSResNet
from flax_cifar.models.layers import Network
from flax_cifar.models.seednet import SeedNet
from flax_cifar.models.splitnet import SplitNet
from flax_cifar.models.summary import layer_table, param_count, summarize
from flax_cifar.models.tiniest import Tiniest

MODELS = {'seednet': SeedNet, 'dsresnet': DSResNet, 'airnet': AirNet, 'splitnet': SplitNet,
          'tiniest': Tiniest}

__all__ = ['MODELS', 'create_model', 'default_args', 'layer_table', 'param_count',
           'summarize']


def create_model(name: str, **kwargs) -> nn.Module:
    """The model registered under `name`, built with `kwargs` (the config's `model_args`)."""
    if name not in MODELS:
        raise InputError(f'config.model={name!r} is not a model; choose one of {sorted(MODELS)}')
    fields = {f.name for f in dataclasses.fields(MODELS[name])} - {'parent', 'name'}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise InputError(f'config.model_args has {unknown} which model {name!r} does not take; '
                         f'it takes {sorted(fields)}')
    return MODELS[name](**kwargs)


def default_args(name: str) -> dict:
    """The family's own fields (not `layers.Network`'s) and their defaults: what a config's
    `model_args` leaves out, the network takes from here."""
    shared = {f.name for f in dataclasses.fields(Network)}
    return {f.name: f.default for f in dataclasses.fields(MODELS.get(name, Network))
            if f.name not in shared and f.default is not dataclasses.MISSING}
