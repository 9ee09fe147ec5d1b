import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import smoke
from conftest import CONFIG_FILES, load_config
from flax_cifar import validation
from flax_cifar.errors import InputError
from flax_cifar.state import optim, train_state
from flax_cifar.training import whitening


def correlated_images(n=40, seed=0):
    """Normalized-looking images whose neighbouring pixels and channels are correlated, as
    in photographs: the case whitening exists for."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 34, 34, 3))
    x = x[:, 1:-1, 1:-1] + 0.8 * x[:, :-2, 1:-1] + 0.6 * x[:, 1:-1, 2:]  # blur
    return (x @ np.array([[1.0, 0.7, 0.5], [0.0, 1.0, 0.6], [0.0, 0.0, 1.0]])).astype(np.float32)


def numpy_patch_covariance(images, size=3):
    patches = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size * size * images.shape[-1])
    return patches.T @ patches / len(patches)


def test_patch_covariance_orders_entries_as_a_kernel():
    images = correlated_images()
    np.testing.assert_allclose(whitening.patch_covariance(jnp.asarray(images), (3, 3)),
                               numpy_patch_covariance(images), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('eps', [5e-4, 0.5])
def test_whitened_kernel_decorrelates_the_patches_and_pairs_each_direction_with_its_negative(eps):
    images = correlated_images()
    kernel = whitening.whitening_kernel(jnp.asarray(images), (3, 3, 3, 16), eps)
    outputs = jax.lax.conv_general_dilated(jnp.asarray(images), kernel, (1, 1), 'VALID',
                                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    outputs = np.asarray(outputs).reshape(-1, 16)
    np.testing.assert_allclose(outputs[:, 8:], -outputs[:, :8], atol=1e-5)
    eigenvalues = np.linalg.eigvalsh(numpy_patch_covariance(images))[::-1][:8]
    # Nothing shared between the kept directions; each of variance eigenvalue / (eigenvalue
    # + eps): 1 where eps is negligible, the weak directions held down where it is not.
    np.testing.assert_allclose(outputs[:, :8].T @ outputs[:, :8] / len(outputs),
                               np.diag(eigenvalues / (eigenvalues + eps)), atol=2e-3)


@pytest.mark.parametrize('features', [15, 56])
def test_impossible_first_conv_widths_are_named(features):
    with pytest.raises(InputError, match=rf'config.whitening.layer: .* {features} features'):
        whitening.whitening_kernel(jnp.asarray(correlated_images(2)), (3, 3, 3, features),
                                   5e-4)


def test_frozen_kernel_neither_trains_nor_decays_while_the_rest_trains():
    config = smoke_with_whitening()
    model = train_state.model_of(config)
    tx = optim.create_optimizer(config, optim.create_learning_rate_fn(config.optim, 10))
    state = train_state.create_train_state(jax.random.key(0), model, tx, ema=True)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)), jnp.uint8)
    layer = config.whitening.layer
    initial = state.params[layer]['kernel']
    state = whitening.whiten_layer(state, layer, images, config.data.normalize,
                                     config.whitening.eps)
    kernel = state.params[layer]['kernel']
    assert kernel.shape == initial.shape and not np.allclose(kernel, initial)
    np.testing.assert_array_equal(state.ema['params'][layer]['kernel'], kernel)
    # Two steps of the optimizer on gradients of ones: momentum and weight decay move every
    # other parameter, the whitened kernel stays as it was.
    step = jax.jit(lambda s: s.apply_gradients(grads=jax.tree.map(jnp.ones_like, s.params)))
    new = step(step(state))
    np.testing.assert_array_equal(new.params[layer]['kernel'], kernel)
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), new.params, state.params)
    moved[layer]['kernel'] = True
    assert all(jax.tree.leaves(moved))


def smoke_with_whitening():
    config = smoke.get_config()
    config.whitening.layer = 'stem_conv'
    return config


@pytest.mark.parametrize('config_file', CONFIG_FILES)
def test_every_shipped_config_whitens_a_layer_that_reads_the_image(config_file):
    config = load_config(config_file)
    if not config.whitening.layer:
        return
    model = train_state.model_of(config)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))['params']
    height, width, channels, _ = params[config.whitening.layer]['kernel'].shape
    assert channels == 3 and height == width  # it reads the RGB image: whitening can set it


def test_a_whitened_layer_the_network_lacks_is_refused_at_start():
    config = smoke_with_whitening()
    config.whitening.layer = 'stem'
    with pytest.raises(InputError, match=r"config.whitening.layer='stem': the network has no "
                                         r"such layer with a kernel"):
        validation.validate_config(config)
