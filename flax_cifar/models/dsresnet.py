"""DSResNet: depthwise-separable residual stages with dilated convs."""
import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from flax_cifar.models.layers import BatchNorm, Dropout, Network, Pool, SeparableConv


class DSResNet(Network):
    """The project's network: depthwise-separable, dilated, residual.

    stem: dense 3x3 conv at full resolution. Each stage: a separable conv to the stage width,
    2x2 max pool, BN, ReLU, then `depth` residual units x + ReLU(BN(SepConv_dilated(x))).
    Head: global average pool and a dense classifier.
    """
    stem_features: int = 32
    stage_features: Sequence[int] = (96, 192, 256)
    stage_depths: Sequence[int] = (1, 1, 1)
    stage_dilations: Sequence[int] = (2, 2, 1)
    depthwise: bool = True
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = functools.partial(BatchNorm, use_running_average=not train, dtype=self.dtype)
        sep = functools.partial(SeparableConv, depthwise=self.depthwise, dtype=self.dtype,
                                implementation=self.depthwise_implementation)
        x = x.astype(self.dtype)
        x = nn.Conv(self.stem_features, (3, 3), padding=1, use_bias=False, dtype=self.dtype,
                    name='stem_conv')(x)
        x = nn.relu(norm(name='stem_bn')(x))
        for s, (features, depth, dilation) in enumerate(
                zip(self.stage_features, self.stage_depths, self.stage_dilations)):
            name = f'stage{s + 1}'
            x = sep(features, padding=1, name=f'{name}_sepconv')(x)
            x = Pool('max', 2, 2, name=f'{name}_pool')(x)
            x = nn.relu(norm(name=f'{name}_bn')(x))
            for d in range(depth):
                y = sep(features, dilation=dilation, padding=dilation,
                        name=f'{name}_res{d + 1}_sepconv')(x)
                y = nn.relu(norm(name=f'{name}_res{d + 1}_bn')(y))
                x = x + Dropout(self.dropout_rate, deterministic=not train,
                                name=f'{name}_res{d + 1}_dropout')(y)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)
        return x.astype(jnp.float32)
