"""AirNet: airbench's layout made depthwise-separable and dilated."""
import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from flax_cifar.errors import InputError
from flax_cifar.models.kernels import PointwiseConv
from flax_cifar.models.layers import ACTIVATIONS, Network, Pool, SeparableConv, dirac_init

# Weight initializers: Flax's default, or PyTorch's (kaiming_uniform(a=sqrt(5))).
INITS = {'lecun': nn.initializers.lecun_normal(),
         'torch': nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')}


class AirNet(Network):
    """airbench's layout, made depthwise-separable and dilated, for under 200k parameters.

    A frozen 2x2 patch-whitening conv (config.whitening.layer), then one block per width:
    `depth` convs, conv -> BN -> act, all but the first dilated, a 2x2 max pool after conv
    `pool_after` (airbench: the first, before its BN). Every conv is depthwise-separable (a
    depthwise 3x3 and a pointwise 1x1) except the first `dense_convs`, dense 3x3 convs where
    the resolution is high and channels few; `group_channels` > 1 makes the undilated 3x3
    kernels grouped, that many channels a group (the dilated stay depthwise); `block_expansions` > 1
    widens each separable conv's input first (MobileNetV2's inverted residual: few
    parameters in the 3x3, much computation). A final max
    pool over what is left, a dense classifier scaled by `head_scale` (airbench: 1/9, logits
    that start small keep the high learning rate stable).
    """
    whiten_kernel: int = 2
    whiten_features: int = 24       # twice the patch's 2*2*3 entries: every direction, +/-
    block_features: Sequence[int] = (64, 192, 256)
    block_depths: Sequence[int] = (2, 2, 2)        # convs per block, the first one pools
    block_dilations: Sequence[int] = (2, 2, 1)     # of each block's convs after the first
    pool_after: Sequence[int] = (1, 1, 1)          # each block pools after this conv (1-based)
    group_channels: int = 1         # channels per group of the undilated 3x3 kernels
    block_expansions: Sequence[int] = (1, 1, 1)    # >1: a block's separable convs widen
                                    # their input this many times first (1x1 conv, BN, act)
    dense_convs: int = 1            # the first N convs (in order) dense, not separable
    depthwise: bool = True          # feature_group_count=in_features in the separable convs
    residual: bool = False          # x + conv(x) around the convs after each block's first
    activation: str = 'gelu'        # 'gelu' or 'relu'
    dirac: bool = True              # identity-initialized convs (dirac_init)
    bn_scale: bool = False          # train BatchNorm's scale; airbench holds it at 1
    bn_momentum: float = 0.6        # running statistics' decay (PyTorch's 0.4)
    head_scale: float = 1 / 9
    bn_epsilon: float = 1e-5        # airbench: 1e-12
    whiten_bias: bool = False       # a trained bias on the whitening conv (airbench93)
    weight_init: str = 'lecun'      # 'lecun' (Flax's), or 'torch': U(+-1 / sqrt(fan_in))

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.activation not in ACTIVATIONS:
            raise InputError(f'config.model_args.activation={self.activation!r} is not one of '
                             f'{sorted(ACTIVATIONS)}')
        if self.weight_init not in INITS:
            raise InputError(f'config.model_args.weight_init={self.weight_init!r} is not one '
                             f'of {sorted(INITS)}')
        act = ACTIVATIONS[self.activation]
        base = INITS[self.weight_init]
        init = dirac_init(base) if self.dirac else base
        spatial_init = dirac_init(base, grouped=True) if self.dirac else base
        if len(self.pool_after) < len(self.block_depths) or not all(
                1 <= p <= d for p, d in zip(self.pool_after, self.block_depths)):
            raise InputError(f'config.model_args.pool_after={tuple(self.pool_after)} must name '
                             f'one conv of each block (depths {tuple(self.block_depths)})')
        if len(self.block_expansions) < len(self.block_depths) or min(self.block_expansions) < 1:
            raise InputError(f'config.model_args.block_expansions={tuple(self.block_expansions)} '
                             f'needs a factor >= 1 for each block')
        if self.residual and any(p > 1 for p in self.pool_after):
            raise InputError('config.model_args.residual=True adds each conv after the first '
                             'to its input: it needs pool_after=1 in every block')
        norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                                 epsilon=self.bn_epsilon,
                                 momentum=self.bn_momentum, use_scale=self.bn_scale,
                                 dtype=self.dtype)
        x = x.astype(self.dtype)
        x = nn.Conv(self.whiten_features, (self.whiten_kernel,) * 2, padding='VALID',
                    use_bias=self.whiten_bias, dtype=self.dtype, name='whiten_conv')(x)
        x = act(x)
        for b, (features, depth, dilation) in enumerate(
                zip(self.block_features, self.block_depths, self.block_dilations)):
            for c in range(depth):
                name = f'block{b + 1}_conv{c + 1}'
                d = 1 if c == 0 else dilation
                if sum(self.block_depths[:b]) + c < self.dense_convs:
                    y = nn.Conv(features, (3, 3), padding=d, kernel_dilation=d, use_bias=False,
                                kernel_init=init, dtype=self.dtype, name=name)(x)
                else:
                    inner = x
                    expansion = self.block_expansions[b]
                    if expansion > 1:  # MobileNetV2's inverted residual
                        inner = PointwiseConv(x.shape[-1] * expansion, self.dtype, init,
                                              name=f'{name}_expand')(x)
                        inner = act(norm(name=f'{name}_expand_bn')(inner))
                    y = SeparableConv(features, d, padding=d, depthwise=self.depthwise,
                                      dtype=self.dtype,
                                      implementation=self.depthwise_implementation,
                                      kernel_init=init, spatial_init=spatial_init,
                                      channels_per_group=self.group_channels if d == 1 else 1,
                                      name=name)(inner)
                if c + 1 == self.pool_after[b]:
                    y = Pool('max', 2, 2, name=f'block{b + 1}_pool')(y)
                y = act(norm(name=f'{name}_bn')(y))
                x = x + y if self.residual and c > 0 else y
        x = jnp.max(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, use_bias=False, kernel_init=base, dtype=self.dtype,
                     name='classifier')(x)
        return (x * self.head_scale).astype(jnp.float32)
