"""The building blocks every family shares: normalization, dropout, pooling, separable convs,
activations, initializers, and the fields every network takes."""
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flax_cifar.models.kernels import DepthwiseConv, PointwiseConv, SubsampledConv
from flax_cifar.models.pooling import max_pool_tiles

# PyTorch's BatchNorm2d defaults (momentum 0.1 there is 0.9 here), as the seed used.
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


class Dropout(nn.Module):
    """`nn.Dropout`, with masks drawn from 16 random bits per element instead of 32.

    On CPU the random bits dominated the seed network's train-mode forward: each 32-bit
    draw is used as two 16-bit ones, and on CPU they come from threefry's faster
    non-partitionable form (elsewhere the partitionable default lets sharded devices draw
    only their share; docs/speed.md). The drop probability is `rate` rounded to a multiple
    of 2**-16, and kept values are scaled by the exact inverse of the keep probability, so
    the output's expectation is the input.
    """
    rate: float
    deterministic: bool = False

    @nn.compact
    def __call__(self, x):
        if self.deterministic or self.rate == 0:
            return x
        if self.rate >= 1:
            return jnp.zeros_like(x)
        threshold = round(self.rate * 2 ** 16)  # drop where the 16 bits are below it
        with jax.threefry_partitionable(jax.default_backend() != 'cpu'):
            bits = jax.random.bits(self.make_rng('dropout'), ((x.size + 1) // 2,), jnp.uint32)
        halves = jax.lax.bitcast_convert_type(bits, jnp.uint16).reshape(-1)[:x.size]
        # Computed once: without the barrier XLA may fuse the hash into each consumer of the
        # output, the backward pass's too, and compute the same bits several times.
        keep = jax.lax.optimization_barrier(halves.reshape(x.shape) >= threshold)
        return jnp.where(keep, x / (1 - threshold / 2 ** 16), jnp.zeros_like(x))


class Pool(nn.Module):
    """Average or max pooling as a module, so that it shows in the summary and the RF.

    Max pooling over non-overlapping windows is `pooling.max_pool_tiles`: the same outputs,
    and a backward pass of one elementwise loop, where `nn.max_pool`'s select-and-scatter is
    many times its forward on CPU (docs/speed.md). Only exact ties differ: their gradient is
    split between them instead of going to one.
    """
    kind: str  # 'avg' or 'max'
    window: int
    stride: int
    padding: int = 0  # on every side
    include_pad: bool = False  # an average over the padding's zeros too (PyTorch's default)

    def __call__(self, x):
        k, p = self.window, self.padding
        if self.kind == 'max' and self.stride == k and not p:  # a ragged edge is dropped
            return max_pool_tiles(x, k)
        # Keywords, as exporters that patch these functions (jax2onnx) expect them.
        pool = nn.avg_pool if self.kind == 'avg' else nn.max_pool
        extra = {'count_include_pad': self.include_pad} if self.kind == 'avg' else {}
        return pool(x, window_shape=(k, k), strides=(self.stride,) * 2,
                    padding=((p, p), (p, p)), **extra)


class SeparableConv(nn.Module):
    """A 3x3 spatial conv (dilated, strided) followed by a 1x1 pointwise conv.

    With `depthwise=True` the 3x3 conv is a true depthwise conv (one filter per input
    channel, `feature_group_count=in_features`); with False it is the seed's dense 3x3.
    """
    features: int
    dilation: int = 1
    stride: int = 1
    padding: Any = 0
    depthwise: bool = True
    dtype: Any = jnp.float32
    implementation: str = 'auto'  # DepthwiseConv's: 'auto', 'shifts' or 'conv'
    kernel_init: Any = nn.initializers.lecun_normal()
    channels_per_group: int = 1   # of the 3x3 conv where depthwise (1: true depthwise)
    spatial_init: Any = None      # the 3x3 kernel's initializer (None: kernel_init)

    @nn.compact
    def __call__(self, x):
        in_features = x.shape[-1]
        if self.depthwise:
            x = DepthwiseConv((3, 3), self.stride, self.padding, self.dilation, self.dtype,
                              self.implementation, self.spatial_init or self.kernel_init,
                              self.channels_per_group, name='depthwise')(x)
        else:
            x = nn.Conv(in_features, (3, 3), strides=self.stride, padding=self.padding,
                        kernel_dilation=self.dilation, use_bias=False, dtype=self.dtype,
                        kernel_init=self.kernel_init,
                        conv_general_dilated_cls=SubsampledConv, name='depthwise')(x)
        return PointwiseConv(self.features, self.dtype, self.kernel_init, name='pointwise')(x)


class Network(nn.Module):
    """The fields every network here takes besides its own."""
    num_classes: int = 10
    dtype: Any = jnp.float32
    depthwise_implementation: str = 'auto'  # how true depthwise convs compute (DepthwiseConv)


def torch_uniform(fan_in: int):
    """PyTorch's default for conv and linear weights and biases: U(+-1 / sqrt(fan_in))."""
    bound = 1 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype,
                                                                    -bound, bound)


class Bias(nn.Module):
    """A learned per-channel offset, initialized as PyTorch initializes conv biases."""
    fan_in: int

    @nn.compact
    def __call__(self, x):
        return x + self.param('bias', torch_uniform(self.fan_in), (x.shape[-1],)).astype(x.dtype)


class Scale(nn.Module):
    """x times a learned per-channel weight that starts at 1."""
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        scale = self.param('scale', nn.initializers.ones, (x.shape[-1],), jnp.float32)
        return x * scale.astype(self.dtype)


def tanhexp(x):
    """x * tanh(exp(x)) (Liu and Di, 2020), the gate of xvel/cifar10-tiniest's blocks."""
    return x * jnp.tanh(jnp.exp(jnp.minimum(x, 20.0)))  # exp saturates tanh long before 20


ACTIVATIONS = {'relu': nn.relu, 'gelu': nn.gelu, 'tanhexp': tanhexp}


def dirac_init(base=nn.initializers.lecun_normal(), grouped: bool = False):
    """`base`, with the first min(in, out) filters made the identity (airbench's dirac
    init): each conv starts close to passing its input through, a residual without the
    shortcut. A depthwise kernel (HWIO with I=1), or with `grouped` one of I channels per
    group, keeps its random taps around a centre of 1 on each output's own channel."""
    def init(key, shape, dtype=jnp.float32):
        kernel = base(key, shape, dtype)
        height, width, inputs, outputs = shape
        if grouped or inputs == 1:
            own = jnp.arange(outputs)
            return kernel.at[height // 2, width // 2, own % inputs, own].set(1.0)
        n = jnp.arange(min(inputs, outputs))
        return kernel.at[:, :, :, n].set(0.0).at[height // 2, width // 2, n, n].set(1.0)
    return init
