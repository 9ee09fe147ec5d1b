"""SplitNet: channels split over depthwise kernels of several sizes, gated 1x1 mixing."""
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from flax_cifar.errors import InputError
from flax_cifar.models.kernels import DepthwiseConv, PointwiseConv
from flax_cifar.models.layers import ACTIVATIONS, Network, Pool, Scale, SeparableConv


class SplitBlock(nn.Module):
    """x * scale + fc2(act(a) * b), where (a, b) = fc1(norm(mix(x))).

    `mix` splits the channels into len(kernels) equal groups, each its own depthwise conv
    (kernel 0: passed through), so one block sees 3x3 and dilated 7x7 neighbourhoods at once
    for the parameters of a few taps per channel; a dilated kernel reads a 3x3 average, so
    its holes see every pixel. fc1 and fc2 are the gated 1x1 mixing (a GLU); `scale` is a
    learned per-channel weight on the shortcut.
    """
    kernels: Sequence[int]
    dilations: Sequence[int]
    hidden: int
    norm: Any
    activation: Any
    kernel_init: Any
    dtype: Any = jnp.float32
    implementation: str = 'auto'

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        groups = jnp.split(x, len(self.kernels), axis=-1)
        mixed = []
        for g, (group, kernel, dilation) in enumerate(zip(groups, self.kernels, self.dilations)):
            if kernel:
                if dilation > 1:
                    group = Pool('avg', 3, 1, padding=1, name=f'branch{g}_blur')(group)
                group = DepthwiseConv((kernel, kernel), 1, dilation * (kernel - 1) // 2,
                                      dilation, self.dtype, self.implementation,
                                      self.kernel_init, name=f'branch{g}_depthwise')(group)
            mixed.append(group)
        y = self.norm(name='norm')(jnp.concatenate(mixed, axis=-1))
        a, b = jnp.split(PointwiseConv(2 * self.hidden, self.dtype, self.kernel_init,
                                       name='fc1')(y), 2, axis=-1)
        y = PointwiseConv(features, self.dtype, self.kernel_init,
                          name='fc2')(self.activation(a) * b)
        return Scale(self.dtype, name='shortcut_scale')(x) + y


class SplitNet(Network):
    """xvel/cifar10-tiniest's layout (channels split over depthwise kernels of several sizes,
    one dilated; gated 1x1 mixing; scaled shortcuts), with a whitened stem.

    stem: frozen whitening conv (config.whitening.layer) -> act -> 1x1 to stage 1's width ->
    (2x2 max pool) -> norm: most of the computation then runs at 16x16 and below. Each stage
    after the first opens with a separable 3x3 to its width, a 2x2 max pool and a norm, then
    `depth` SplitBlocks. Head: global average pool, norm, dense.
    """
    whiten_kernel: int = 3
    whiten_features: int = 54       # twice the patch's 3*3*3 entries: every direction, +/-
    stem_pool: bool = True          # 2x2 max pool after the stem: stage 1 works at 16x16
    stage_features: Sequence[int] = (80, 136)
    stage_depths: Sequence[int] = (3, 2)
    kernels: Sequence[int] = (0, 3, 5, 5)     # depthwise kernel of each channel group
    dilations: Sequence[int] = (1, 1, 1, 3)   # its kernel_dilation
    expansion: float = 1.0          # gated hidden width over the block's width
    norm: str = 'layer'             # 'layer' or 'batch' (frozen scale; did not train)
    activation: str = 'tanhexp'     # the gate's activation
    bn_momentum: float = 0.6

    @nn.compact
    def __call__(self, x, train: bool = False):
        for field in ('activation', 'norm'):
            choices = ACTIVATIONS if field == 'activation' else ('batch', 'layer')
            if getattr(self, field) not in choices:
                raise InputError(f'config.model_args.{field}={getattr(self, field)!r} is not '
                                 f'one of {sorted(choices)}')
        if len(self.kernels) != len(self.dilations) or any(
                f % len(self.kernels) for f in self.stage_features):
            raise InputError(f'config.model_args: kernels {tuple(self.kernels)} and dilations '
                             f'{tuple(self.dilations)} must pair up and split every width in '
                             f'stage_features {tuple(self.stage_features)} evenly')
        act = ACTIVATIONS[self.activation]
        if self.norm == 'batch':
            norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                                     epsilon=1e-5, momentum=self.bn_momentum,
                                     use_scale=False, dtype=self.dtype)
        else:
            norm = functools.partial(nn.LayerNorm, epsilon=1e-5, dtype=self.dtype)
        init = nn.initializers.lecun_normal()
        x = x.astype(self.dtype)
        x = nn.Conv(self.whiten_features, (self.whiten_kernel,) * 2,
                    padding=(self.whiten_kernel - 1) // 2, use_bias=False, dtype=self.dtype,
                    name='whiten_conv')(x)
        x = PointwiseConv(self.stage_features[0], self.dtype, name='stem_pointwise')(act(x))
        if self.stem_pool:
            x = Pool('max', 2, 2, name='stem_pool')(x)
        x = norm(name='stem_norm')(x)
        for s, (features, depth) in enumerate(zip(self.stage_features, self.stage_depths)):
            name = f'stage{s + 1}'
            if s > 0:
                x = SeparableConv(features, padding=1, dtype=self.dtype,
                                  implementation=self.depthwise_implementation,
                                  name=f'{name}_sepconv')(x)
                x = norm(name=f'{name}_norm')(Pool('max', 2, 2, name=f'{name}_pool')(x))
            for d in range(depth):
                x = SplitBlock(self.kernels, self.dilations, round(features * self.expansion),
                               norm, act, init, self.dtype, self.depthwise_implementation,
                               name=f'{name}_block{d + 1}')(x)
        x = norm(name='head_norm')(jnp.mean(x, axis=(1, 2), keepdims=True))
        x = nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x[:, 0, 0])
        return x.astype(jnp.float32)
