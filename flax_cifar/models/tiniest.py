"""Tiniest: xvel/cifar10-tiniest's network, layer for layer (97,530 parameters at its widths).

A 3x3 stem and LayerNorm at 32x32, `depths[0]` blocks of `widths[0]` channels, a grouped 4x4
stride-2 conv and LayerNorm to 16x16, `depths[1]` blocks of `widths[1]`, a global average and
a dense classifier. Each block splits its channels in quarters: one passed through, one
through a 3x3 depthwise conv, one through a 7x7, one through a 3x3 average and a 7x7 dilated
3 (every pixel seen); then LayerNorm over the channels, a 1x1 conv to twice the hidden width,
one half gated by tanh(exp(.)) of itself times the other, a 1x1 conv back, and the block's
input times a learned per-channel scale added. Parameters start as PyTorch's defaults do.
"""
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from flax_cifar.errors import InputError
from flax_cifar.models.kernels import DepthwiseConv, GroupedConv, PointwiseConv
from flax_cifar.models.layers import Bias, Network, Pool, Scale, tanhexp, torch_uniform


def torch_conv(features, kernel, fan_in, name, dtype, **kwargs):
    return nn.Conv(features, (kernel, kernel), dtype=dtype, kernel_init=torch_uniform(fan_in),
                   bias_init=torch_uniform(fan_in), name=name, **kwargs)


class TiniestBlock(nn.Module):
    hidden: int
    kernels: Sequence[int] = (0, 3, 7, 7)
    dilations: Sequence[int] = (1, 1, 1, 3)
    dtype: jnp.dtype = jnp.float32
    implementation: str = 'auto'

    def pointwise(self, features: int, fan_in: int, name: str):
        """A 1x1 conv with a bias (PointwiseConv: its kernel gradient is fast on CPU)."""
        conv = PointwiseConv(features, self.dtype, torch_uniform(fan_in), name=name)
        bias = Bias(fan_in, name=f'{name}_bias')
        return lambda x: bias(conv(x))

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        mixed = []
        for g, (group, kernel, dilation) in enumerate(zip(
                jnp.split(x, len(self.kernels), axis=-1), self.kernels, self.dilations)):
            if kernel:
                if dilation > 1:  # PyTorch's avg_pool2d counts the zero padding
                    group = Pool('avg', 3, 1, padding=1, include_pad=True,
                                 name=f'branch{g}_blur')(group)
                group = DepthwiseConv((kernel, kernel), 1, dilation * (kernel - 1) // 2,
                                      dilation, self.dtype, self.implementation,
                                      torch_uniform(kernel * kernel),
                                      name=f'branch{g}_depthwise')(group)
                group = Bias(kernel * kernel, name=f'branch{g}_bias')(group)
            mixed.append(group)
        y = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name='norm')(jnp.concatenate(mixed, -1))
        a, b = jnp.split(self.pointwise(2 * self.hidden, features, 'fc1')(y), 2, -1)
        y = self.pointwise(features, self.hidden, 'fc2')(tanhexp(a) * b)
        return y + Scale(self.dtype, name='shortcut_scale')(x)


class Tiniest(Network):
    widths: Sequence[int] = (48, 80)
    depths: Sequence[int] = (3, 3)
    hidden: Sequence[int] = (48, 80)   # each stage's gated width (fc1 gives twice it)
    kernels: Sequence[int] = (0, 3, 7, 7)
    dilations: Sequence[int] = (1, 1, 1, 3)
    down_groups: int = 16              # feature groups of the 4x4 stride-2 conv between stages

    @nn.compact
    def __call__(self, x, train: bool = False):
        first, second = self.widths
        if first % len(self.kernels) or second % len(self.kernels) or (
                first % self.down_groups or second % self.down_groups):
            raise InputError(f'config.model_args: widths {tuple(self.widths)} must split into '
                             f'{len(self.kernels)} channel groups and {self.down_groups} '
                             f'feature groups')
        norm = lambda name: nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name=name)
        block = lambda s, d: TiniestBlock(self.hidden[s], self.kernels, self.dilations,
                                          self.dtype, self.depthwise_implementation,
                                          name=f'stage{s + 1}_block{d + 1}')
        x = x.astype(self.dtype)
        x = norm('stem_norm')(torch_conv(first, 3, 3 * 9, 'stem_conv', self.dtype, padding=1)(x))
        for d in range(self.depths[0]):
            x = block(0, d)(x)
        fan_in = (first // self.down_groups) * 16
        x = GroupedConv(second, 4, 2, 1, self.down_groups, self.dtype, torch_uniform(fan_in),
                        torch_uniform(fan_in), name='down_conv')(x)
        x = norm('down_norm')(x)
        for d in range(self.depths[1]):
            x = block(1, d)(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=torch_uniform(second),
                     bias_init=torch_uniform(second), name='classifier')(x)
        return x.astype(jnp.float32)
