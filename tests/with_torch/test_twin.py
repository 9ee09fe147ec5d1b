"""The PyTorch twin of the default network (benchmarks/airnet_torch.py): collected only where
PyTorch is installed (it is no dependency of flax_cifar), since the speed ratio it measures
means something only if the twin computes what the default network computes."""
import importlib.util
import os

import jax
import numpy as np
import torch
from flax import traverse_util

from configs import default
from conftest import REPO
from flax_cifar.state import train_state


def load_twin():
    path = os.path.join(REPO, 'benchmarks', 'airnet_torch.py')
    spec = importlib.util.spec_from_file_location('airnet_torch', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def to_torch(name: tuple, value: np.ndarray) -> torch.Tensor:
    """A Flax parameter in the twin's layout: HWIO kernels as OIHW, dense (in, out) as
    (out, in), per-channel biases as (1, C, 1, 1)."""
    if value.ndim == 4:
        value = value.transpose(3, 2, 0, 1)
    elif name[-2] == 'classifier':
        value = value.T
    else:
        value = value.reshape(1, -1, 1, 1)
    return torch.from_numpy(np.array(value))


def test_the_twin_computes_the_default_network():
    twin_module = load_twin()
    config = default.get_config()
    model = train_state.model_of(config)
    images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    variables = model.init(jax.random.key(0), images, train=False)
    flat = traverse_util.flatten_dict(variables['params'])  # in the network's order
    twin = twin_module.AirNetTwin().eval()
    twin_params = list(twin.parameters())
    assert twin_module.parameter_count(twin) == twin_module.PARAMETERS == sum(
        v.size for v in flat.values())
    # Parameter for parameter, in order, then the same logits (BatchNorm's running
    # statistics at their initial 0 and 1 in both).
    assert len(twin_params) == len(flat)
    with torch.no_grad():
        for param, (name, value) in zip(twin_params, flat.items()):
            converted = to_torch(name, np.asarray(value))
            assert param.shape == converted.shape, name
            param.copy_(converted)
        logits = twin(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    expected = np.asarray(model.apply(variables, images, train=False))
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-4)
