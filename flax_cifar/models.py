"""CIFAR-10 networks built from dilated and depthwise-separable convolutions.

Two families:
  * `SeedNet`: the seed write-up's network, layer for layer (185,936 parameters). Its
    "depthwise" 3x3 convs are dense, as the seed's parameter counts show; `depthwise=True`
    makes them true depthwise convs (`feature_group_count=in_features`).
  * `DSResNet`: the project's default, true depthwise-separable residual stages with dilated
    convs; widths, depths and dilations come from the config.

`summarize` prints a seed-style table with every layer's receptive field.
"""
import dataclasses
import functools
import re
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flax_cifar.errors import InputError

# PyTorch's BatchNorm2d defaults (momentum 0.1 there is 0.9 here), as the seed used.
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


class Dropout(nn.Module):
    """`nn.Dropout`, with masks drawn from 16 random bits per element instead of 32.

    On CPU the random bits dominated the seed network's train-mode forward: each 32-bit
    draw is used as two 16-bit ones, and on CPU they come from threefry's faster
    non-partitionable form (elsewhere the partitionable default lets sharded devices draw
    only their share). Measurements: docs/speed.md. The drop probability is `rate` rounded to a multiple of 2**-16, and kept
    values are scaled by the exact inverse of the keep probability, so the output's
    expectation is the input.
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

    Max pooling over non-overlapping windows is computed as a reshape and a max: the same
    outputs, and a backward pass that XLA fuses into elementwise work, where `nn.max_pool`'s
    select-and-scatter is many times its forward on CPU (docs/speed.md). Only exact ties
    differ: their gradient is split between them instead of going to one.
    """
    kind: str  # 'avg' or 'max'
    window: int
    stride: int
    padding: int = 0  # on every side; an average counts only the pixels inside

    def __call__(self, x):
        n, h, w, c = x.shape
        k, p = self.window, self.padding
        if self.kind == 'max' and self.stride == k and not p:  # a ragged edge is dropped
            x = x[:, :h - h % k, :w - w % k]
            return x.reshape(n, h // k, k, w // k, k, c).max(axis=(2, 4))
        # Keywords, as exporters that patch these functions (jax2onnx) expect them.
        pool = nn.avg_pool if self.kind == 'avg' else nn.max_pool
        extra = {'count_include_pad': False} if self.kind == 'avg' else {}
        return pool(x, window_shape=(k, k), strides=(self.stride,) * 2,
                    padding=((p, p), (p, p)), **extra)


def _conv_1x1(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@jax.custom_vjp
def _pointwise(x, kernel):
    return _conv_1x1(x, kernel)


def _pointwise_fwd(x, kernel):
    return _conv_1x1(x, kernel), (x, kernel)


def _pointwise_bwd(residuals, grad):
    """The input's gradient as autodiff gives it; the kernel's as one matrix product."""
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: _conv_1x1(x, kernel), x)
    kernel_grad = jnp.einsum('nhwc,nhwd->cd', x, grad)[None, None]
    return input_vjp(grad)[0], kernel_grad.astype(kernel.dtype)


_pointwise.defvjp(_pointwise_fwd, _pointwise_bwd)


class PointwiseConv(nn.Module):
    """A 1x1 conv: `nn.Conv(features, (1, 1), use_bias=False)` with the same parameter
    (`kernel`, shape (1, 1, in, features), same init) and the same outputs and gradients.

    The forward pass and the input's gradient are XLA's convolution, as in `nn.Conv`; the
    kernel's gradient is a matrix product over all pixels (`_pointwise_bwd`), which XLA's
    CPU backend computes far faster than the convolution over the batch it otherwise emits.
    Dots both ways were slower for the whole network (docs/speed.md).
    """
    features: int
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        kernel = self.param('kernel', self.kernel_init,
                            (1, 1, x.shape[-1], self.features), jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        return _pointwise(x, kernel)


IMPLEMENTATIONS = ('auto', 'shifts', 'conv')

# Images per chunk when the CPU sums a shifted depthwise conv's kernel gradient (see below).
KERNEL_GRADIENT_CHUNK = 8


def _windows(x, kernel_shape, stride: int, dilation: int):
    """((a, b), strided window of padded x that tap (a, b) of the kernel multiplies)."""
    (kh, kw), (_, h, w, c) = kernel_shape, x.shape
    out_h = (h - dilation * (kh - 1) - 1) // stride + 1
    out_w = (w - dilation * (kw - 1) - 1) // stride + 1
    for a in range(kh):
        for b in range(kw):
            yield (a, b), jax.lax.slice(
                x, (0, a * dilation, b * dilation, 0),
                (x.shape[0], a * dilation + (out_h - 1) * stride + 1,
                 b * dilation + (out_w - 1) * stride + 1, c), (1, stride, stride, 1))


def _shifted_depthwise(x, kernel, stride: int, dilation: int):
    """Depthwise conv of already padded x as k*k shifted multiply-adds (one fused loop)."""
    windows = _windows(x, kernel.shape[:2], stride, dilation)
    return sum(window * kernel[a, b, 0] for (a, b), window in windows)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _shifted_depthwise_cpu(x, kernel, stride, dilation):
    return _shifted_depthwise(x, kernel, stride, dilation)


def _shifted_depthwise_cpu_fwd(x, kernel, stride, dilation):
    return _shifted_depthwise(x, kernel, stride, dilation), (x, kernel)


def _shifted_depthwise_cpu_bwd(stride, dilation, residuals, grad):
    """The input's gradient as autodiff gives it; the kernel's summed over chunks of
    KERNEL_GRADIENT_CHUNK images in a lax.map: a sum over the whole batch per tap made XLA's
    CPU backend stream k*k full-batch products through memory; chunks stay in cache
    (docs/speed.md)."""
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: _shifted_depthwise(x, kernel, stride, dilation), x)
    pad = -x.shape[0] % KERNEL_GRADIENT_CHUNK  # zero images add nothing to the sums
    chunks = lambda t: jnp.pad(t, ((0, pad),) + ((0, 0),) * 3).reshape(
        -1, KERNEL_GRADIENT_CHUNK, *t.shape[1:])

    def chunk_gradient(chunk):
        x_chunk, grad_chunk = chunk
        return jnp.stack([jnp.sum(window * grad_chunk, axis=(0, 1, 2)) for _, window in
                          _windows(x_chunk, kernel.shape[:2], stride, dilation)])

    kernel_grad = jax.lax.map(chunk_gradient, (chunks(x), chunks(grad))).sum(0)
    return input_vjp(grad)[0], kernel_grad.reshape(kernel.shape).astype(kernel.dtype)


_shifted_depthwise_cpu.defvjp(_shifted_depthwise_cpu_fwd, _shifted_depthwise_cpu_bwd)


class DepthwiseConv(nn.Module):
    """A depthwise conv: `nn.Conv(C, (k, k), feature_group_count=C)` with the same parameter
    (`kernel`, shape (k, k, 1, C), same init) and the same outputs and gradients.

    XLA's grouped convolution is slow on CPU and GPU (jax-ml/jax issues 13800, 23713, 26266;
    docs/speed.md), so there it is computed
    as k*k shifted multiply-adds, which XLA fuses into one loop; on TPU (not measured) `lax.conv`
    with `feature_group_count` is used. On CPU the kernel's gradient is summed in chunks of
    images (`_shifted_depthwise_cpu_bwd`); a GPU keeps plain autodiff, where a loop over
    chunks would cost a host round trip each. A stride that divides the dilation (the seed's
    unit5) is taken as `SubsampledConv` takes it, by either implementation (faster on CPU,
    docs/speed.md).
    """
    kernel_size: tuple = (3, 3)
    strides: int = 1
    padding: int = 0
    kernel_dilation: int = 1
    dtype: Any = jnp.float32
    implementation: str = 'auto'  # 'auto' (by backend), 'shifts' or 'conv'
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        if self.implementation not in IMPLEMENTATIONS:
            raise InputError(f'depthwise_implementation={self.implementation!r} is not one of '
                             f'{IMPLEMENTATIONS}')
        channels = x.shape[-1]
        kernel = self.param('kernel', self.kernel_init, (*self.kernel_size, 1, channels),
                            jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        backend = jax.default_backend()
        use_shifts = self.implementation == 'shifts' or (
            self.implementation == 'auto' and backend in ('cpu', 'gpu'))
        if not use_shifts:
            return SubsampledConv()(
                x, kernel, (self.strides,) * 2, [(self.padding, self.padding)] * 2,
                rhs_dilation=(self.kernel_dilation,) * 2, feature_group_count=channels,
                dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
        p, stride, dilation = self.padding, self.strides, self.kernel_dilation
        x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        if reads_every_stride_th_row((stride,) * 2, (dilation,) * 2):  # as SubsampledConv
            x, stride, dilation = x[:, ::stride, ::stride], 1, dilation // stride
        shifted = _shifted_depthwise_cpu if backend == 'cpu' else _shifted_depthwise
        return shifted(x, kernel, stride, dilation)


def reads_every_stride_th_row(strides, dilation) -> bool:
    """Whether a conv with these strides and dilations (one per spatial axis) reads every
    stride-th row and column of its padded input and no other: each dilation a multiple of
    a stride above 1. Such a conv equals one at stride 1 over those rows (SubsampledConv)."""
    return max(strides) > 1 and all(d % s == 0 for s, d in zip(strides, dilation))


class SubsampledConv:
    """`lax.conv_general_dilated` for `nn.Conv(conv_general_dilated_cls=...)`, channels last.

    Tap k of a strided conv's output i reads input row stride * i + dilation * k of the padded
    input; where the dilation is a multiple of the stride, that is every stride-th row (and
    column) and no other. This conv takes those alone and convolves them at stride 1 and
    dilation / stride: the same sums, the same output size. Its input gradient is a stride-1
    conv and a scatter, where XLA's for the strided form convolves the gradient dilated with
    zeros, several times slower on CPU (docs/speed.md). Other convs pass through.
    """

    def __call__(self, lhs, rhs, window_strides, padding, lhs_dilation=None,
                 rhs_dilation=None, **kwargs):
        strides = tuple(window_strides)
        dilation = tuple(rhs_dilation or (1,) * len(strides))
        if (isinstance(padding, str) or any(lo < 0 or hi < 0 for lo, hi in padding)
                or any(d != 1 for d in lhs_dilation or ())
                or not reads_every_stride_th_row(strides, dilation)):
            return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                                rhs_dilation, **kwargs)
        lhs = jnp.pad(lhs, [(0, 0), *padding, (0, 0)])
        lhs = lhs[(slice(None), *(slice(None, None, s) for s in strides))]
        return jax.lax.conv_general_dilated(lhs, rhs, (1,) * len(strides), 'VALID', None,
                                            tuple(d // s for s, d in zip(strides, dilation)),
                                            **kwargs)


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

    @nn.compact
    def __call__(self, x):
        in_features = x.shape[-1]
        if self.depthwise:
            x = DepthwiseConv((3, 3), self.stride, self.padding, self.dilation, self.dtype,
                              self.implementation, self.kernel_init, name='depthwise')(x)
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


# The seed's table, one row per conv unit: (features, dilation, stride, padding, separable).
SEED_LAYERS = (
    (16, 1, 1, 0, False),  # 30x30
    (32, 2, 1, 0, True),   # 26x26
    (32, 2, 1, 0, True),   # 22x22
    (64, 2, 1, 0, True),   # 18x18
    (64, 2, 2, 0, True),   # 7x7
    (64, 1, 1, 1, True),   # 7x7
    (64, 1, 1, 1, True),   # 7x7
    (64, 1, 1, 1, False),  # 7x7
)


class SeedNet(Network):
    """The seed network: each unit is conv -> ReLU -> BatchNorm -> Dropout, as in the seed."""
    first_conv: ClassVar[str] = 'unit1_conv'  # the layer config.stem_whitening sets
    depthwise: bool = False
    dropout_rate: float = 0.05

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        for i, (features, dilation, stride, padding, separable) in enumerate(SEED_LAYERS):
            name = f'unit{i + 1}'
            if separable:
                x = SeparableConv(features, dilation, stride, padding, self.depthwise,
                                  self.dtype, self.depthwise_implementation,
                                  name=f'{name}_sepconv')(x)
            else:
                x = nn.Conv(features, (3, 3), strides=stride, padding=padding,
                            kernel_dilation=dilation, use_bias=False, dtype=self.dtype,
                            name=f'{name}_conv')(x)
            x = nn.relu(x)
            x = BatchNorm(use_running_average=not train, dtype=self.dtype, name=f'{name}_bn')(x)
            x = Dropout(self.dropout_rate, deterministic=not train, name=f'{name}_dropout')(x)
        x = Pool('avg', 7, 7, name='avgpool')(x)
        x = nn.Conv(self.num_classes, (1, 1), use_bias=False, dtype=self.dtype,
                    name='classifier')(x)
        return x.reshape(x.shape[0], -1).astype(jnp.float32)


class DSResNet(Network):
    """The project's network: depthwise-separable, dilated, residual.

    stem: dense 3x3 conv at full resolution. Each stage: a separable conv to the stage width,
    2x2 max pool, BN, ReLU, then `depth` residual units x + ReLU(BN(SepConv_dilated(x))).
    Head: global average pool and a dense classifier.
    """
    first_conv: ClassVar[str] = 'stem_conv'  # the layer config.stem_whitening sets
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


ACTIVATIONS = {'relu': nn.relu, 'gelu': nn.gelu}


def dirac_init(base=nn.initializers.lecun_normal()):
    """`base`, with the first min(in, out) filters made the identity (airbench's dirac
    init): each conv starts close to passing its input through, a residual without the
    shortcut. A depthwise kernel (HWIO with I=1) keeps its random taps around a centre of 1."""
    def init(key, shape, dtype=jnp.float32):
        kernel = base(key, shape, dtype)
        height, width, inputs, outputs = shape
        if inputs == 1:
            return kernel.at[height // 2, width // 2].set(1.0)
        n = jnp.arange(min(inputs, outputs))
        return kernel.at[:, :, :, n].set(0.0).at[height // 2, width // 2, n, n].set(1.0)
    return init


class AirNet(Network):
    """airbench's layout, made depthwise-separable and dilated, for under 200k parameters.

    A frozen 2x2 patch-whitening conv (config.stem_whitening), then one block per width:
    conv -> 2x2 max pool -> BN -> act, then `depth - 1` more conv -> BN -> act, dilated.
    Every conv is depthwise-separable (a depthwise 3x3 and a pointwise 1x1) except the first
    `dense_convs`, dense 3x3 convs where the resolution is high and channels few. A final
    max pool over what is left, a dense classifier scaled by `head_scale` (airbench: 1/9,
    logits that start small keep the high learning rate stable).
    """
    first_conv: ClassVar[str] = 'whiten_conv'  # the layer config.stem_whitening sets
    whiten_kernel: int = 2
    whiten_features: int = 24       # twice the patch's 2*2*3 entries: every direction, +/-
    block_features: Sequence[int] = (64, 192, 256)
    block_depths: Sequence[int] = (2, 2, 2)        # convs per block, the first one pools
    block_dilations: Sequence[int] = (2, 2, 1)     # of each block's convs after the first
    dense_convs: int = 1            # the first N convs (in order) dense, not separable
    depthwise: bool = True          # feature_group_count=in_features in the separable convs
    residual: bool = False          # x + conv(x) around the convs after each block's first
    activation: str = 'gelu'        # 'gelu' or 'relu'
    dirac: bool = True              # identity-initialized convs (dirac_init)
    bn_scale: bool = False          # train BatchNorm's scale; airbench holds it at 1
    bn_momentum: float = 0.6        # running statistics' decay (PyTorch's 0.4)
    head_scale: float = 1 / 9

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.activation not in ACTIVATIONS:
            raise InputError(f'config.model_args.activation={self.activation!r} is not one of '
                             f'{sorted(ACTIVATIONS)}')
        act = ACTIVATIONS[self.activation]
        init = dirac_init() if self.dirac else nn.initializers.lecun_normal()
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, epsilon=1e-5,
                                 momentum=self.bn_momentum, use_scale=self.bn_scale,
                                 dtype=self.dtype)
        x = x.astype(self.dtype)
        x = nn.Conv(self.whiten_features, (self.whiten_kernel,) * 2, padding='VALID',
                    use_bias=False, dtype=self.dtype, name='whiten_conv')(x)
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
                    y = SeparableConv(features, d, padding=d, depthwise=self.depthwise,
                                      dtype=self.dtype,
                                      implementation=self.depthwise_implementation,
                                      kernel_init=init, name=name)(x)
                if c == 0:
                    y = Pool('max', 2, 2, name=f'block{b + 1}_pool')(y)
                y = act(norm(name=f'{name}_bn')(y))
                x = x + y if self.residual and c > 0 else y
        x = jnp.max(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype, name='classifier')(x)
        return (x * self.head_scale).astype(jnp.float32)


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


ACTIVATIONS['tanhexp'] = tanhexp


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
    one dilated; gated 1x1 mixing; scaled shortcuts), with a whitened stem and BatchNorm.

    stem: frozen whitening conv (config.stem_whitening) -> act -> 1x1 to stage 1's width ->
    (2x2 max pool) -> norm: most of the computation then runs at 16x16 and below. Each stage after the first opens with a separable 3x3 to its width, a 2x2 max pool
    and a norm, then `depth` SplitBlocks. Head: global average pool, norm, dense.
    """
    first_conv: ClassVar[str] = 'whiten_conv'  # the layer config.stem_whitening sets
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


MODELS = {'seed': SeedNet, 'dsresnet': DSResNet, 'airnet': AirNet, 'splitnet': SplitNet}


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
               Dropout, Pool, Scale)
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


def summarize(model: nn.Module, input_shape=(32, 32, 3), frozen_layers=()) -> str:
    """The seed's summary table, plus each layer's receptive field in input pixels; the
    parameters of `frozen_layers` (paths) count as not trainable."""
    rows = layer_table(model, input_shape)
    width = max(len(f'{r.path} ({r.kind})') for r in rows) + 2
    rule = '=' * (width + 44)
    lines = [rule, f"{'Layer (type)':>{width}}{'Output Shape':>22}{'Param #':>12}{'RF':>10}", rule]
    for r in rows:
        shape = str([-1, *r.output_shape])
        lines.append(f"{f'{r.path} ({r.kind})':>{width}}{shape:>22}{r.params:>12,}"
                     f"{f'{r.receptive_field}x{r.receptive_field}':>10}")
    total = sum(r.params for r in rows)
    trainable = sum(r.params for r in rows if r.path not in frozen_layers)
    lines += [rule, f'Total params: {total:,}', f'Trainable params: {trainable:,}',
              f'Receptive field: {rows[-1].receptive_field}x{rows[-1].receptive_field} pixels',
              rule]
    return '\n'.join(lines)
