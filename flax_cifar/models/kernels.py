"""Convolutions and pools computed the way the CPU (and GPU) trains them fastest, with the
parameters, outputs and gradients of Flax's own: a 1x1 conv whose kernel gradient is a batch of
matrix products, a depthwise conv as shifted multiply-adds, a strided conv over the rows it
reads (the tiling max pool: pooling.py). Measurements: docs/speed.md.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flax_cifar.errors import InputError


def _conv_1x1(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@jax.custom_vjp
def _pointwise(x, kernel):
    return _conv_1x1(x, kernel)


def _pointwise_fwd(x, kernel):
    return _conv_1x1(x, kernel), (x, kernel)


# Row blocks the CPU sums a 1x1 conv's kernel gradient over (see _pointwise_bwd).
POINTWISE_GRADIENT_BLOCKS = 4


def _pointwise_kernel_gradient(x, grad, blocks: int):
    """sum over pixels of x^T grad, as `blocks` matrix products over blocks of pixels summed:
    one product over all pixels (hundreds of thousands of rows) ran 3-5x slower on XLA:CPU,
    which transposes both operands first (docs/speed.md)."""
    rows = x.shape[0] * x.shape[1] * x.shape[2]
    pad = -rows % blocks  # zero rows add nothing
    x, grad = (jnp.pad(t.reshape(rows, -1), ((0, pad), (0, 0))).reshape(blocks, -1, t.shape[-1])
               for t in (x, grad))
    return jnp.einsum('bpc,bpd->bcd', x, grad).sum(0)


def _pointwise_bwd(residuals, grad):
    """The input's gradient as autodiff gives it; the kernel's as matrix products, in row
    blocks on CPU (elsewhere one product)."""
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: _conv_1x1(x, kernel), x)
    blocks = POINTWISE_GRADIENT_BLOCKS if jax.default_backend() == 'cpu' else 1
    kernel_grad = _pointwise_kernel_gradient(x, grad, blocks)[None, None]
    return input_vjp(grad)[0], kernel_grad.astype(kernel.dtype)


_pointwise.defvjp(_pointwise_fwd, _pointwise_bwd)


class PointwiseConv(nn.Module):
    """A 1x1 conv: `nn.Conv(features, (1, 1), use_bias=False)` with the same parameter
    (`kernel`, shape (1, 1, in, features), same init) and the same outputs and gradients.

    The forward pass and the input's gradient are XLA's convolution, as in `nn.Conv`; the
    kernel's gradient is a sum of matrix products over blocks of pixels (`_pointwise_bwd`),
    which XLA's CPU backend computes far faster than the convolution over the batch it
    otherwise emits. Dots both ways were slower for the whole network (docs/speed.md).
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


def _depthwise_input_gradient(x, kernel, stride: int, dilation: int, grad):
    """At stride 1, itself a shifted depthwise conv: the gradient, padded by the kernel's
    reach, against the kernel turned 180 degrees. One fused loop, where autodiff pads and adds
    k*k arrays: half the time for tiniest's 7x7 kernels (docs/speed.md)."""
    if stride != 1:
        _, input_vjp = jax.vjp(lambda x: _shifted_depthwise(x, kernel, stride, dilation), x)
        return input_vjp(grad)[0]
    reach = [(dilation * (k - 1),) * 2 for k in kernel.shape[:2]]
    return _shifted_depthwise(jnp.pad(grad, [(0, 0), *reach, (0, 0)]), kernel[::-1, ::-1], 1,
                              dilation)


def _shifted_depthwise_cpu_bwd(stride, dilation, residuals, grad):
    """The input's gradient by `_depthwise_input_gradient`; the kernel's summed over chunks of
    KERNEL_GRADIENT_CHUNK images in a lax.map: a sum over the whole batch per tap made XLA's
    CPU backend stream k*k full-batch products through memory; chunks stay in cache
    (docs/speed.md)."""
    x, kernel = residuals
    pad = -x.shape[0] % KERNEL_GRADIENT_CHUNK  # zero images add nothing to the sums
    chunks = lambda t: jnp.pad(t, ((0, pad),) + ((0, 0),) * 3).reshape(
        -1, KERNEL_GRADIENT_CHUNK, *t.shape[1:])

    def chunk_gradient(chunk):
        x_chunk, grad_chunk = chunk
        return jnp.stack([jnp.sum(window * grad_chunk, axis=(0, 1, 2)) for _, window in
                          _windows(x_chunk, kernel.shape[:2], stride, dilation)])

    kernel_grad = jax.lax.map(chunk_gradient, (chunks(x), chunks(grad))).sum(0)
    return (_depthwise_input_gradient(x, kernel, stride, dilation, grad),
            kernel_grad.reshape(kernel.shape).astype(kernel.dtype))


_shifted_depthwise_cpu.defvjp(_shifted_depthwise_cpu_fwd, _shifted_depthwise_cpu_bwd)


def _rotated_within_groups(x, group: int, shift: int):
    """x with each group of `group` consecutive channels rotated by `shift`: channel r of a
    group takes the group's channel (r + shift) % group."""
    return jnp.roll(x.reshape(*x.shape[:-1], -1, group), -shift, axis=-1).reshape(x.shape)


def _grouped_as_depthwise(depthwise, x, kernel):
    """A grouped conv, kernel (k, k, g, C) as nn.Conv holds it for g channels per group, as
    g depthwise convs: output channel o = G*g + r sums input channel G*g + (r + j) % g against
    kernel[:, :, (r + j) % g, o], over j; each j is a depthwise conv of x rotated within its
    groups by j."""
    group, channels = kernel.shape[2:]
    if group == 1:
        return depthwise(x, kernel)
    taps = (jnp.arange(channels) % group)[None, None, None, :]
    return sum(depthwise(_rotated_within_groups(x, group, j),
                         jnp.take_along_axis(kernel, (taps + j) % group, axis=2))
               for j in range(group))


class DepthwiseConv(nn.Module):
    """A depthwise conv: `nn.Conv(C, (k, k), feature_group_count=C)` with the same parameter
    (`kernel`, shape (k, k, 1, C), same init) and the same outputs and gradients; with
    `channels_per_group` g > 1, the grouped conv `nn.Conv(C, (k, k), feature_group_count=C/g)`
    (kernel (k, k, g, C)), computed as g depthwise convs (`_grouped_as_depthwise`).

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
    channels_per_group: int = 1   # 1: depthwise

    @nn.compact
    def __call__(self, x):
        if self.implementation not in IMPLEMENTATIONS:
            raise InputError(f'depthwise_implementation={self.implementation!r} is not one of '
                             f'{IMPLEMENTATIONS}')
        channels, group = x.shape[-1], self.channels_per_group
        if group < 1 or channels % group:
            raise InputError(f'channels_per_group={group} does not divide the {channels} '
                             f'channels of {self.name}')
        kernel = self.param('kernel', self.kernel_init, (*self.kernel_size, group, channels),
                            jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        backend = jax.default_backend()
        use_shifts = self.implementation == 'shifts' or (
            self.implementation == 'auto' and backend in ('cpu', 'gpu'))
        if not use_shifts:
            return SubsampledConv()(
                x, kernel, (self.strides,) * 2, [(self.padding, self.padding)] * 2,
                rhs_dilation=(self.kernel_dilation,) * 2, feature_group_count=channels // group,
                dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
        p, stride, dilation = self.padding, self.strides, self.kernel_dilation
        x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        if reads_every_stride_th_row((stride,) * 2, (dilation,) * 2):  # as SubsampledConv
            x, stride, dilation = x[:, ::stride, ::stride], 1, dilation // stride
        shifted = _shifted_depthwise_cpu if backend == 'cpu' else _shifted_depthwise
        return _grouped_as_depthwise(lambda x, kernel: shifted(x, kernel, stride, dilation),
                                     x, kernel)


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


class GroupedConv(nn.Module):
    """`nn.Conv(features, (k, k), strides, padding, feature_group_count=groups)` with the same
    parameters (`kernel` (k, k, in / groups, features), `bias`) and outputs, computed as k*k
    strided slices and one product per group: XLA's grouped convolution is slow on CPU
    (xvel/cifar10-tiniest's 16-group 4x4 conv took most of its step; docs/speed.md)."""
    features: int
    kernel_size: int
    strides: int = 1
    padding: int = 0
    groups: int = 1
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        channels, k, g = x.shape[-1], self.kernel_size, self.groups
        kernel = self.param('kernel', self.kernel_init,
                            (k, k, channels // g, self.features), jnp.float32)
        bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        p = self.padding
        x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        taps = jnp.stack([window for _, window in _windows(x, (k, k), self.strides, 1)], -2)
        n, h, w = taps.shape[:3]
        taps = taps.reshape(n, h, w, k * k, g, channels // g)
        weights = kernel.reshape(k * k, channels // g, g, self.features // g)
        y = jnp.einsum('nhwtgc,tcgo->nhwgo', taps, weights).reshape(n, h, w, self.features)
        return y + bias.astype(self.dtype)
