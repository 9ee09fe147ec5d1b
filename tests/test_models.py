import functools
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CONFIG_FILES, REPO, load_config
from flax_cifar import models
from flax_cifar.errors import InputError
from flax_cifar.models import airnet, kernels, layers, seednet, splitnet

# The seed's summary table: (layer type, output shape as (H, W, C), parameters), per row
# that Flax has as a module (ReLU is a function here, and the two convs of each
# "depthwise_separable_conv" are rows of their own, as in the seed's table; the 1x1 one is a
# `PointwiseConv`, an `nn.Conv` computed as a matrix product).
SEED_TABLE = [
    ('Conv', (30, 30, 16), 432), ('BatchNorm', (30, 30, 16), 32), ('Dropout', (30, 30, 16), 0),
    ('Conv', (26, 26, 16), 2304), ('PointwiseConv', (26, 26, 32), 512),
    ('BatchNorm', (26, 26, 32), 64), ('Dropout', (26, 26, 32), 0),
    ('Conv', (22, 22, 32), 9216), ('PointwiseConv', (22, 22, 32), 1024),
    ('BatchNorm', (22, 22, 32), 64), ('Dropout', (22, 22, 32), 0),
    ('Conv', (18, 18, 32), 9216), ('PointwiseConv', (18, 18, 64), 2048),
    ('BatchNorm', (18, 18, 64), 128), ('Dropout', (18, 18, 64), 0),
    ('Conv', (7, 7, 64), 36864), ('PointwiseConv', (7, 7, 64), 4096),
    ('BatchNorm', (7, 7, 64), 128), ('Dropout', (7, 7, 64), 0),
    ('Conv', (7, 7, 64), 36864), ('PointwiseConv', (7, 7, 64), 4096),
    ('BatchNorm', (7, 7, 64), 128), ('Dropout', (7, 7, 64), 0),
    ('Conv', (7, 7, 64), 36864), ('PointwiseConv', (7, 7, 64), 4096),
    ('BatchNorm', (7, 7, 64), 128), ('Dropout', (7, 7, 64), 0),
    ('Conv', (7, 7, 64), 36864), ('BatchNorm', (7, 7, 64), 128), ('Dropout', (7, 7, 64), 0),
    ('Pool', (1, 1, 64), 0), ('Conv', (1, 1, 10), 640),
]


def init_params(model):
    x = jnp.zeros((2, 32, 32, 3))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params']


def test_seed_network_matches_the_seed_table_row_by_row():
    rows = models.layer_table(seednet.SeedNet())
    assert [(r.kind, r.output_shape, r.params) for r in rows] == SEED_TABLE
    assert models.param_count(init_params(seednet.SeedNet())) == 185_936


def test_seed_network_logits_shape():
    model = seednet.SeedNet()
    x = jnp.ones((3, 32, 32, 3))
    logits = jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), x), x))
    assert logits.shape == (3, 10)


def test_true_depthwise_switch_groups_the_3x3_convs():
    dense = init_params(seednet.SeedNet(depthwise=False))
    grouped = init_params(seednet.SeedNet(depthwise=True))
    for name in ('unit2_sepconv', 'unit5_sepconv'):
        c_in = dense[name]['depthwise']['kernel'].shape[2]
        assert dense[name]['depthwise']['kernel'].shape == (3, 3, c_in, c_in)
        # feature_group_count=in_features: one 3x3 filter per channel, 1 input channel each.
        assert grouped[name]['depthwise']['kernel'].shape == (3, 3, 1, c_in)
    # Each separable unit's 3x3 goes from 9*C*C to 9*C weights: C = 16, 32, 32, 64, 64, 64.
    saved = sum(9 * c * c - 9 * c for c in (16, 32, 32, 64, 64, 64))
    assert models.param_count(grouped) == 185_936 - saved == 57_056


def test_depthwise_conv_really_uses_feature_group_count():
    layer = layers.SeparableConv(8, dilation=2, depthwise=True)
    x = jax.random.normal(jax.random.key(1), (1, 9, 9, 8))
    variables = layer.init(jax.random.key(0), x)
    # The module equals a grouped conv (dilated, no padding) followed by the 1x1 matmul.
    kernel = variables['params']['depthwise']['kernel']
    out = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID', rhs_dilation=(2, 2),
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                       feature_group_count=8)
    pointwise = variables['params']['pointwise']['kernel'][0, 0]
    assert jnp.allclose(layer.apply(variables, x), out @ pointwise, atol=1e-5)


def test_seed_receptive_field_by_hand():
    # conv 3x3: 3. Three dilated (d=2, effective 5x5) convs: 3+4+4+4 = 15. The stride-2
    # dilated conv: 19, then the jump is 2. Three 3x3 convs at jump 2: 19+4+4+4 = 31.
    # The 7x7 average pool at jump 2: 31 + 6*2 = 43. The 1x1 classifier adds nothing.
    rows = models.layer_table(seednet.SeedNet())
    assert [r.receptive_field for r in rows if r.kind in ('Conv', 'PointwiseConv', 'Pool')] == [
        3, 7, 7, 11, 11, 15, 15, 19, 19, 23, 23, 27, 27, 31, 43, 43]
    assert 'Receptive field: 43x43 pixels' in models.summarize(seednet.SeedNet())


def test_summary_ends_with_the_total():
    text = models.summarize(seednet.SeedNet())
    assert 'Total params: 185,936' in text and 'Trainable params: 185,936' in text
    assert text.count('\n') > len(SEED_TABLE)
    frozen = models.summarize(seednet.SeedNet(), is_frozen=lambda path: path[0] == 'unit1_conv')
    assert 'Total params: 185,936' in frozen and 'Trainable params: 185,504' in frozen


def test_default_network_is_depthwise_dilated_and_small():
    model = models.create_model('dsresnet')
    params = init_params(model)
    assert models.param_count(params) <= 200_000
    rows = models.layer_table(model)
    kernels = [v['depthwise']['kernel'] for v in params.values()
               if isinstance(v, dict) and 'depthwise' in v]
    assert kernels and all(k.shape[2] == 1 for k in kernels)  # grouped, one channel each
    assert rows[-1].receptive_field > 32


def test_unknown_model_and_argument_are_refused_by_name():
    with pytest.raises(ValueError, match="config.model='resnet50'"):
        models.create_model('resnet50')
    with pytest.raises(ValueError, match='widths'):
        models.create_model('seednet', widths=(1, 2))


def assert_same_layer(module, reference, x, grad_atol):
    """`module` has `reference`'s parameter tree and initial values, outputs (1e-5) and
    gradients to its parameters and input; returns the parameters."""
    params = reference.init(jax.random.key(1), x)
    assert jax.tree.all(jax.tree.map(jnp.array_equal, params, module.init(jax.random.key(1), x)))
    # Jitted, as training runs them (and one compile, not one per small op: seconds a case).
    apply = jax.jit(lambda layer, params, x: layer.apply(params, x), static_argnums=0)
    out, out_ref = apply(module, params, x), apply(reference, params, x)
    assert out.shape == out_ref.shape
    assert jnp.allclose(out, out_ref, atol=1e-5)

    def loss(layer, params, x):
        return jnp.sum(jnp.sin(layer.apply(params, x)))

    grad = jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=0)
    grads, grads_ref = grad(module, params, x), grad(reference, params, x)
    assert jax.tree.all(jax.tree.map(lambda a, b: jnp.allclose(a, b, atol=grad_atol), grads,
                                     grads_ref))
    return params


# Where a test reads the jaxpr, it checks which computation runs (the speed claims of
# docs/speed.md: no convolution on CPU, one strided slice, a matrix product for the kernel's
# gradient, no select-and-scatter): no output can show that, and each sits beside the test
# that the outputs and gradients equal nn.Conv's or nn.max_pool's.
@pytest.mark.parametrize('stride, dilation, padding', [
    (1, 1, 1), (1, 2, 2), (2, 1, 1), (1, 2, 0),
    (2, 2, 0), (2, 2, 1), (2, 4, 3), (3, 3, 2)])  # dilation a multiple of the stride: subsampled
def test_shifted_depthwise_conv_equals_grouped_nn_conv(stride, dilation, padding):
    x = jax.random.normal(jax.random.key(0), (2, 11, 11, 6))
    reference = nn.Conv(6, (3, 3), strides=stride, padding=padding, kernel_dilation=dilation,
                        feature_group_count=6, use_bias=False)
    shifted = kernels.DepthwiseConv((3, 3), stride, padding, dilation, implementation='shifts')
    params = assert_same_layer(shifted, reference, x, grad_atol=1e-4)
    out_ref = reference.apply(params, x)
    conv = kernels.DepthwiseConv((3, 3), stride, padding, dilation, implementation='conv')
    assert jnp.allclose(conv.apply(params, x), out_ref, atol=1e-5)
    # 'auto' picks the shifts on CPU (and GPU): no convolution left in the program.
    auto = kernels.DepthwiseConv((3, 3), stride, padding, dilation)
    assert 'conv_general_dilated' not in str(jax.make_jaxpr(auto.apply)(params, x))
    conv_jaxpr = str(jax.make_jaxpr(conv.apply)(params, x))
    assert 'conv_general_dilated' in conv_jaxpr
    # Where the dilation is a multiple of the stride, both read every stride-th row and
    # column once, then convolve at stride 1 (SubsampledConv): one strided slice, not nine.
    subsampled = stride > 1 and dilation % stride == 0
    strided_slices = str(jax.make_jaxpr(shifted.apply)(params, x)).count(
        f'strides=(1, {stride}, {stride}, 1)')
    assert strided_slices == (1 if subsampled else 9)
    assert ('window_strides=(1, 1)' in conv_jaxpr) == (stride == 1 or subsampled)


@pytest.mark.parametrize('size, stride, dilation, padding', [
    (18, 2, 2, 0),   # the seed's unit5
    (17, 2, 2, 1), (19, 2, 4, 3), (16, 3, 3, 2),  # odd sizes, other multiples, padding
    (15, 2, 1, 1), (15, 1, 2, 2)])  # dilation not a multiple of the stride / no stride: as is
def test_subsampled_conv_equals_the_strided_nn_conv(size, stride, dilation, padding):
    x = jax.random.normal(jax.random.key(0), (3, size, size, 5))
    conv = functools.partial(nn.Conv, 4, (3, 3), strides=stride, padding=padding,
                             kernel_dilation=dilation, use_bias=False)
    subsampled = conv(conv_general_dilated_cls=kernels.SubsampledConv)
    params = assert_same_layer(subsampled, conv(), x, grad_atol=1e-4)
    rewritten = 'window_strides=(1, 1)' in str(jax.make_jaxpr(subsampled.apply)(params, x))
    assert rewritten == (dilation % stride == 0)


def test_seed_unit5_convolves_the_input_it_reads_at_stride_1():
    model = seednet.SeedNet()
    x = jnp.zeros((1, 32, 32, 3))
    jaxpr = str(jax.make_jaxpr(lambda x: model.init_with_output(jax.random.key(0), x)[0])(x))
    # Only unit5 is strided (2) with a dilation (2): convolved at stride 1 and dilation 1.
    assert 'window_strides=(2, 2)' not in jaxpr
    assert 'window_strides=(1, 1)' in jaxpr


@pytest.mark.parametrize('kernel, stride, dilation, padding', [
    (3, 1, 2, 1), (3, 2, 1, 1), (7, 1, 1, 3), (7, 1, 3, 9), (5, 1, 2, 2)])
def test_depthwise_gradient_over_a_batch_its_chunks_do_not_divide(kernel, stride, dilation,
                                                                   padding):
    """On CPU the kernel's gradient is summed in chunks of images and, at stride 1, the
    input's is a conv with the kernel turned over: 11 images (chunks do not divide them) give
    nn.Conv's gradients, for tiniest's 7x7 kernels (dilated 3, 'same') and a padding less
    than the kernel's reach."""
    x = jax.random.normal(jax.random.key(0), (11, 9, 9, 5))
    reference = nn.Conv(5, (kernel, kernel), strides=stride, padding=padding,
                        kernel_dilation=dilation, feature_group_count=5, use_bias=False)
    shifted = kernels.DepthwiseConv((kernel, kernel), stride, padding, dilation,
                                    implementation='shifts')
    assert_same_layer(shifted, reference, x, grad_atol=1e-4)


@pytest.mark.parametrize('shape', [(2, 5, 5, 6), (4, 3, 3, 6)])  # 50 rows: blocks padded; 36
def test_pointwise_conv_equals_a_1x1_nn_conv(shape):
    x = jax.random.normal(jax.random.key(0), shape)
    reference = nn.Conv(4, (1, 1), use_bias=False)
    pointwise = kernels.PointwiseConv(4)
    params = assert_same_layer(pointwise, reference, x, grad_atol=1e-5)
    loss = lambda module, params, x: jnp.sum(jnp.sin(module.apply(params, x)))
    # The kernel's gradient is matrix products over blocks of pixels (a batch dimension),
    # not a convolution over the batch.
    kernel_grad = str(jax.make_jaxpr(jax.grad(lambda p: loss(pointwise, p, x)))(params))
    blocks = kernels.POINTWISE_GRADIENT_BLOCKS
    assert f'f32[{blocks},6,4] = dot_general' in kernel_grad


@pytest.mark.parametrize('shape, window', [((2, 8, 8, 3), 2), ((1, 9, 6, 2), 3), ((1, 7, 7, 2), 2)])
def test_max_pool_equals_nn_max_pool_with_its_gradient(shape, window):
    x = jax.random.normal(jax.random.key(0), shape)  # no ties, where the two would differ
    pool = layers.Pool('max', window, window)
    reference = lambda x: nn.max_pool(x, (window, window), strides=(window, window))
    assert jnp.array_equal(pool.apply({}, x), reference(x))
    grad = jax.grad(lambda x: jnp.sum(jnp.sin(pool.apply({}, x))))(x)
    assert jnp.array_equal(grad, jax.grad(lambda x: jnp.sum(jnp.sin(reference(x))))(x))
    # Strided slices and a max, a ragged edge dropped: never XLA's slow select-and-scatter.
    assert 'reduce_window' not in str(jax.make_jaxpr(lambda x: pool.apply({}, x))(x))
    # The backward pass keeps which taps were the maxima, bits per output, not the input.
    residuals = jax.tree.leaves(jax.vjp(lambda x: pool.apply({}, x), x)[1])
    assert not [r for r in residuals if getattr(r, 'shape', None) == x.shape]
    bits = jnp.uint8 if window == 2 else jnp.uint16  # a bit per tap
    assert [r.dtype for r in residuals if r.shape == reference(x).shape] == [bits]


@pytest.mark.parametrize('shape, window', [((2, 6, 6, 3), 2), ((1, 7, 8, 2), 2), ((1, 9, 7, 2), 3)])
def test_max_pool_splits_the_gradient_among_ties_as_jnp_max_does(shape, window):
    """Rounded inputs tie within many windows (some all four taps); the gradient of each
    window's maximum is shared equally by its ties, as autodiff of a reshape and max gives."""
    x = jnp.round(jax.random.normal(jax.random.key(0), shape))
    n, h, w, c = shape
    rows, cols = h // window, w // window

    def reference(x):
        cropped = x[:, :rows * window, :cols * window]
        return cropped.reshape(n, rows, window, cols, window, c).max(axis=(2, 4))

    pool = layers.Pool('max', window, window)
    assert jnp.array_equal(pool.apply({}, x), reference(x))
    weights = jax.random.normal(jax.random.key(1), (n, rows, cols, c))
    grad = jax.grad(lambda x: jnp.sum(weights * pool.apply({}, x)))(x)
    expected = jax.grad(lambda x: jnp.sum(weights * reference(x)))(x)
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    assert float(jnp.sum((grad != 0) & (grad != expected))) == 0
    assert int(jnp.sum(grad != 0)) > n * rows * cols * c  # ties did occur


@pytest.mark.parametrize('group, stride, dilation, padding', [
    (2, 1, 1, 1), (2, 1, 2, 2), (3, 2, 1, 1), (6, 1, 1, 0)])  # 6: one group, a dense 3x3
def test_grouped_conv_as_depthwise_convs_equals_grouped_nn_conv(group, stride, dilation,
                                                                padding):
    x = jax.random.normal(jax.random.key(0), (3, 9, 9, 6))
    reference = nn.Conv(6, (3, 3), strides=stride, padding=padding, kernel_dilation=dilation,
                        feature_group_count=6 // group, use_bias=False)
    shifted = kernels.DepthwiseConv((3, 3), stride, padding, dilation, implementation='shifts',
                                    channels_per_group=group)
    params = assert_same_layer(shifted, reference, x, grad_atol=1e-4)
    assert params['params']['kernel'].shape == (3, 3, group, 6)
    conv = kernels.DepthwiseConv((3, 3), stride, padding, dilation, implementation='conv',
                                 channels_per_group=group)
    np.testing.assert_allclose(conv.apply(params, x), reference.apply(params, x), atol=1e-5)
    with pytest.raises(InputError, match='channels_per_group=4 does not divide the 6'):
        kernels.DepthwiseConv(channels_per_group=4).init(jax.random.key(0), x)


def test_depthwise_implementation_is_a_model_argument():
    """Both ways of computing a network's depthwise convs give the same network."""
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    args = dict(stem_features=4, stage_features=(8, 8), stage_depths=(1, 1),
                stage_dilations=(2, 1))
    shifts = models.create_model('dsresnet', depthwise_implementation='shifts', **args)
    conv = models.create_model('dsresnet', depthwise_implementation='conv', **args)
    variables = jax.jit(shifts.init)(jax.random.key(1), x)
    assert jnp.allclose(jax.jit(shifts.apply)(variables, x), jax.jit(conv.apply)(variables, x),
                        atol=1e-5)
    with pytest.raises(InputError, match="depthwise_implementation='fast'"):
        models.create_model('seednet', depthwise=True, depthwise_implementation='fast').init(
            jax.random.key(1), x)


def test_dropout_drops_at_its_rate_and_keeps_the_expectation():
    x = jnp.ones((64, 33, 17, 5))  # odd element count: the last 32-bit draw is half used
    layer = layers.Dropout(0.3)
    y = layer.apply({}, x, rngs={'dropout': jax.random.key(0)})
    dropped = float(jnp.mean(y == 0))
    assert abs(dropped - 0.3) < 0.01, dropped
    assert jnp.allclose(y[y != 0], 1 / (1 - round(0.3 * 2 ** 16) / 2 ** 16))
    assert abs(float(jnp.mean(y)) - 1) < 0.02
    other = layer.apply({}, x, rngs={'dropout': jax.random.key(1)})
    assert not jnp.array_equal(y == 0, other == 0)  # the mask comes from the key
    # Both halves of each 32-bit draw are used: masks of neighbours are not copies.
    flat = (y == 0).reshape(-1)
    assert not jnp.array_equal(flat[0::2], flat[1::2])
    # On CPU the bits are threefry's non-partitionable ones (faster there; JAX's default is
    # the partitionable form), jitted or not.
    assert jax.config.jax_threefry_partitionable
    with jax.threefry_partitionable(False):
        assert jnp.array_equal(layer.apply({}, x, rngs={'dropout': jax.random.key(0)}), y)
    jitted = jax.jit(lambda x, key: layer.apply({}, x, rngs={'dropout': key}))
    assert jnp.array_equal(jitted(x, jax.random.key(0)), y)
    assert jnp.array_equal(layers.Dropout(0.3, deterministic=True).apply({}, x), x)
    assert jnp.array_equal(layers.Dropout(1.0).apply({}, x, rngs={'dropout': jax.random.key(0)}),
                           jnp.zeros_like(x))


def airnet_kinds(model):
    return {(r.kind, r.path.split('/')[-1]) for r in models.layer_table(model)}


def test_airnet_is_depthwise_dilated_and_under_200k_parameters():
    model = airnet.AirNet()
    params = init_params(model)
    assert models.param_count(params) <= 200_000
    assert params['block2_conv2']['depthwise']['kernel'].shape == (3, 3, 1, 192)
    rows = models.layer_table(model)
    assert [r.output_shape for r in rows if r.kind == 'Pool'] == [(15, 15, 64), (7, 7, 192),
                                                                  (3, 3, 256)]
    # block 2's later conv is dilated 2: its taps span 2 * 2 rows of maps pooled twice (4
    # input pixels a row), so it widens the field by 16.
    fields = {r.path: r.receptive_field for r in rows}
    assert fields['block2_conv2/depthwise'] - fields['block2_conv1_bn'] == 2 * 2 * 4


def test_airnet_dirac_init_passes_its_input_through():
    init = layers.dirac_init()
    kernel = init(jax.random.key(0), (3, 3, 4, 6))
    x = jax.random.normal(jax.random.key(1), (1, 5, 5, 4))
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    np.testing.assert_allclose(y[..., :4], x, atol=1e-6)  # the first min(in, out) outputs
    assert float(jnp.abs(kernel[..., 4:]).sum()) > 0      # the rest stay random
    depthwise = init(jax.random.key(0), (3, 3, 1, 4))
    np.testing.assert_array_equal(depthwise[1, 1, 0], np.ones(4))
    # Grouped, 2 channels a group: each output's centre tap on its own channel is 1, so a
    # grouped conv (its other taps random) starts close to passing its input through.
    grouped = layers.dirac_init(grouped=True)(jax.random.key(0), (3, 3, 2, 6))
    np.testing.assert_array_equal(grouped[1, 1, np.arange(6) % 2, np.arange(6)], np.ones(6))
    assert float(jnp.abs(grouped[1, 1, (np.arange(6) + 1) % 2, np.arange(6)]).sum()) > 0


def test_airnet_options_change_what_they_name():
    x = jnp.ones((2, 32, 32, 3))
    plain = airnet.AirNet(block_features=(8, 16), block_depths=(2, 1), block_dilations=(2, 1))
    assert 'scale' not in init_params(plain)['block1_conv1_bn']  # held at 1 by default
    scaled = airnet.AirNet(block_features=(8, 16), block_depths=(2, 1),
                           block_dilations=(2, 1), bn_scale=True)
    assert 'scale' in init_params(scaled)['block1_conv1_bn']
    separable = airnet.AirNet(block_features=(8, 16), block_depths=(2, 1),
                              block_dilations=(2, 1), dense_convs=0)
    assert 'depthwise' in init_params(separable)['block1_conv1']
    hybrid = init_params(airnet.AirNet(block_features=(8, 16), block_depths=(2, 1),
                                       block_dilations=(2, 1), dense_convs=2))
    assert hybrid['block1_conv2']['kernel'].shape == (3, 3, 8, 8)     # dense, counted in order
    assert 'depthwise' in hybrid['block2_conv1']                      # separable after them
    with pytest.raises(InputError, match="activation='tanh'"):
        airnet.AirNet(activation='tanh').init(jax.random.key(0), x)


@pytest.mark.parametrize('layout, parameters, pooled', [
    ({}, 192_544, [(15, 15, 64), (7, 7, 192), (3, 3, 256)]),
    # Pooling after each block's second conv: the same parameters, blocks 2 and 3 at 15x15
    # and 7x7 (the first conv of each at the size before).
    ({'pool_after': (2, 2, 2)}, 192_544, [(15, 15, 64), (7, 7, 192), (3, 3, 256)]),
    # Two channels a group in the undilated 3x3 kernels (block2_conv1, block3_conv1 and
    # block3_conv2, dilation 1): 4,608 more weights.
    ({'group_channels': 2}, 197_152, [(15, 15, 64), (7, 7, 192), (3, 3, 256)]),
    ({'group_channels': 4, 'block_features': (64, 192, 240)}, 194_592,
     [(15, 15, 64), (7, 7, 192), (3, 3, 240)]),
    # Inverted residuals in blocks 2 and 3: each separable conv's input widened 4x (2x) by a
    # 1x1 conv with its BN first; narrower blocks pay for them.
    ({'block_expansions': (1, 4, 4), 'block_features': (64, 64, 80)}, 184_480,
     [(15, 15, 64), (7, 7, 64), (3, 3, 80)]),
    ({'block_expansions': (1, 2, 2), 'block_features': (64, 96, 128)}, 194_208,
     [(15, 15, 64), (7, 7, 96), (3, 3, 128)]),
])
def test_airnet_layouts_and_their_parameter_counts(layout, parameters, pooled):
    model = airnet.AirNet(**layout)
    params = init_params(model)
    assert models.param_count(params) == parameters
    rows = models.layer_table(model)
    assert [r.output_shape for r in rows if r.kind == 'Pool'] == pooled
    group = layout.get('group_channels', 1)
    assert params['block3_conv1']['depthwise']['kernel'].shape[2] == group
    assert params['block2_conv2']['depthwise']['kernel'].shape[2] == 1  # dilated: depthwise
    shapes = {r.path: r.output_shape for r in rows}
    late = layout.get('pool_after') == (2, 2, 2)
    width = layout.get('block_features', (64, 192))[1]
    assert shapes['block2_conv2/pointwise'] == ((15, 15, width) if late else (7, 7, width))
    expansion = layout.get('block_expansions', (1, 1, 1))
    assert ('block1_conv2_expand' in params) == (expansion[0] > 1)
    if expansion[1] > 1:  # the depthwise 3x3 runs at the widened width
        assert params['block2_conv2_expand']['kernel'].shape == (1, 1, width, width * expansion[1])
        assert params['block2_conv2']['depthwise']['kernel'].shape[-1] == width * expansion[1]


def test_airnet_pool_position_is_checked():
    x = jnp.ones((1, 32, 32, 3))
    with pytest.raises(InputError, match=r'block_expansions=\(1, 0\) needs a factor >= 1'):
        airnet.AirNet(block_expansions=(1, 0)).init(jax.random.key(0), x)
    with pytest.raises(InputError, match=r'pool_after=\(1, 3, 1\) must name one conv'):
        airnet.AirNet(pool_after=(1, 3, 1)).init(jax.random.key(0), x)
    with pytest.raises(InputError, match='residual=True .* needs pool_after=1'):
        airnet.AirNet(pool_after=(2, 2, 2), residual=True).init(jax.random.key(0), x)


def test_max_pool_of_an_odd_size_drops_the_ragged_edge_as_valid_does():
    x = jax.random.normal(jax.random.key(0), (2, 31, 31, 3))
    pool = layers.Pool('max', 2, 2)
    np.testing.assert_array_equal(pool(x), nn.max_pool(x, (2, 2), strides=(2, 2)))


def test_splitnet_splits_channels_over_depthwise_kernels_one_dilated():
    model = splitnet.SplitNet()
    params = init_params(model)
    assert models.param_count(params) <= 200_000
    block = params['stage1_block1']
    # 80 channels in four groups of 20: passed through, 3x3, 5x5, 5x5 dilated 3.
    assert 'branch0_depthwise' not in block
    assert [block[f'branch{g}_depthwise']['kernel'].shape for g in (1, 2, 3)] == [
        (3, 3, 1, 20), (5, 5, 1, 20), (5, 5, 1, 20)]
    assert block['fc1']['kernel'].shape == (1, 1, 80, 160)  # two halves: gate and value
    rows = {r.path: r for r in models.layer_table(model)}
    assert rows['stage1_block1/branch3_depthwise'].output_shape == (16, 16, 20)
    # Branches are parallel: the block widens the field by its widest branch (a 3x3 average,
    # then 5 taps 3 apart: 2 + 12 input-side pixels at stride 2 = 28), not by their sum.
    before = rows['stem_norm'].receptive_field
    assert rows['stage1_block1/norm'].receptive_field == before + 2 * (2 + 12)


def test_splitnet_block_starts_as_its_shortcut_plus_the_gated_mixing():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 8))
    block = splitnet.SplitBlock((0, 3), (1, 2), hidden=4, norm=nn.LayerNorm,
                              activation=layers.tanhexp, kernel_init=nn.initializers.zeros)
    variables = block.init(jax.random.key(1), x)
    np.testing.assert_allclose(block.apply(variables, x), x)  # zero mixing: the shortcut
    np.testing.assert_allclose(layers.tanhexp(jnp.array([-30.0, 0.0, 30.0])),
                               [0.0, 0.0, 30.0], atol=1e-6)
    with pytest.raises(InputError, match=r'split every width in stage_features \(30,\)'):
        splitnet.SplitNet(stage_features=(30,), stage_depths=(1,)).init(jax.random.key(0),
                                                                      jnp.ones((1, 32, 32, 3)))


# The parameter count of every shipped config, as the README and the configs state them.
PARAMETERS = {'configs/default.py': 192_544, 'configs/airnet.py': 192_544,
              'configs/dsresnet.py': 195_722, 'configs/splitnet.py': 197_116,
              'configs/seednet.py': 185_936, 'configs/smoke.py': 1_370,
              'configs/tiniest.py': 97_530, 'configs/airbench93.py': 569_016,
              'configs/tpu.py': 192_544}


@pytest.mark.parametrize('config_file', CONFIG_FILES)
def test_every_config_has_its_stated_parameter_count(config_file):
    from flax_cifar.state import train_state
    model = train_state.model_of(load_config(config_file), 10)
    assert models.param_count(init_params(model)) == PARAMETERS[config_file]


def test_the_readme_states_those_counts():
    """The README's table of configs, row by row: its parameter column is PARAMETERS'."""
    with open(os.path.join(REPO, 'README.md')) as f:
        rows = re.findall(r'^\| `(configs/\w+\.py)` \|.*\| ([\d,]+) \|$', f.read(), re.M)
    assert len(rows) >= 8
    assert {config: int(count.replace(',', '')) for config, count in rows} == {
        config: PARAMETERS[config] for config, _ in rows}
