import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import write_image_folder
from flax_cifar.data import augment, sources, tfds_source, types
from flax_cifar.errors import InputError


def test_tfds_catalog_path_under_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        split = sources.load_split('cifar10', 'train')
        assert len(sources.class_names('cifar10')) == 10
    assert split.images.shape == (12, 32, 32, 3) and split.images.dtype == np.uint8
    assert split.labels.shape == (12,) and split.labels.dtype == np.int32
    assert split.labels.min() >= 0 and split.labels.max() < 10


def test_catalog_rows_are_read_as_a_tfds_subsplit(monkeypatch):
    asked = []
    with tfds.testing.mock_data(num_examples=12):
        as_dataset = tfds.core.DatasetBuilder.as_dataset  # mock_data's, which ignores slices
        monkeypatch.setattr(tfds.core.DatasetBuilder, 'as_dataset',
                            lambda self, split, **kw: asked.append(split) or as_dataset(
                                self, split=split, **kw))
        assert sources.num_examples('cifar10', 'train') == 12
        sources.load_split('cifar10', 'train', rows=(3, 8))
        sources.load_split('cifar10', 'train', rows=(0, 12))
    # TFDS reads only the records of a subsplit; the whole range is the plain split.
    assert 'train[3:8]' in asked and 'train[0:12]' not in asked


def test_folder_rows_are_a_slice_and_only_they_are_decoded(tmp_path):
    root = write_image_folder(tmp_path / 'data', per_class=3)
    whole = sources.load_split(f'folder:{root}', 'train')
    n = sources.num_examples(f'folder:{root}', 'train')
    assert n == len(whole.labels) == 6
    part = sources.load_split(f'folder:{root}', 'train', rows=(2, 5))
    np.testing.assert_array_equal(part.images, whole.images[2:5])
    np.testing.assert_array_equal(part.labels, whole.labels[2:5])
    # A broken file fails the half that holds it and not the other: the other never reads it.
    with open(os.path.join(root, 'train', 'b', '1.png'), 'wb') as f:
        f.write(b'not a png')
    outcomes = []
    for rows in ((0, 3), (3, 6)):
        try:
            sources.load_split(f'folder:{root}', 'train', rows=rows)
            outcomes.append('read')
        except InputError as e:
            assert '1.png' in str(e)
            outcomes.append('failed')
    assert sorted(outcomes) == ['failed', 'read']


def test_folder_path_reads_images_and_sorted_labels(tmp_path):
    root = write_image_folder(tmp_path / 'data', classes=('cat', 'airplane', 'dog'), per_class=2)
    split = sources.load_split(f'folder:{root}', 'test')
    assert split.images.shape == (6, 32, 32, 3)
    assert sources.class_names(f'folder:{root}') == ['airplane', 'cat', 'dog']
    # Labels are folder names in sorted order; each class's images are bright in its channel.
    for image, label in zip(split.images, split.labels):
        folder_index = ('cat', 'airplane', 'dog').index(sorted(('cat', 'airplane', 'dog'))[label])
        assert image[..., folder_index].mean() > 150


def test_missing_folder_is_one_clear_line(tmp_path):
    with pytest.raises(InputError, match='config.data.dataset: folder .*nope.* does not exist'):
        sources.load_split(f'folder:{tmp_path}/nope', 'train')


def test_missing_split_names_the_splits(tmp_path):
    root = write_image_folder(tmp_path / 'data', splits=('train',))
    with pytest.raises(ValueError, match="no 'test' split; it has \\['train'\\]"):
        sources.load_split(f'folder:{root}', 'test')


def test_unreachable_catalog_dataset_says_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError('no route to host')
    monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', offline)
    with pytest.raises(InputError, match='--config.data.dataset=folder:'):
        sources.load_split('cifar10', 'train', data_dir=str(tmp_path))


def test_random_crop_flip_is_a_shifted_window_of_the_padded_image():
    images = jnp.arange(2 * 32 * 32 * 3, dtype=jnp.int32).reshape(2, 32, 32, 3)
    out = augment.random_crop_flip(jax.random.key(0), images, padding=4)
    assert out.shape == images.shape
    padded = np.pad(np.asarray(images), ((0, 0), (4, 4), (4, 4), (0, 0)))
    for n in range(2):
        windows = [padded[n, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
        windows += [w[:, ::-1] for w in windows]
        assert any(np.array_equal(np.asarray(out[n]), w) for w in windows)


def test_augmentation_varies_with_the_key_and_repeats_with_it():
    images = jax.random.randint(jax.random.key(0), (8, 32, 32, 3), 0, 255).astype(jnp.uint8)
    a = augment.random_crop_flip(jax.random.key(1), images)
    b = augment.random_crop_flip(jax.random.key(1), images)
    c = augment.random_crop_flip(jax.random.key(2), images)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_cutout_zeroes_one_square_per_image_clipped_at_the_borders():
    images = jnp.ones((64, 32, 32, 3))
    out = np.asarray(augment.random_cutout(jax.random.key(0), images, size=8))
    zero = out == 0
    assert np.array_equal(zero, np.repeat(zero[..., :1], 3, -1))  # all channels of a pixel
    rows, cols = zero[..., 0].any(2), zero[..., 0].any(1)
    for n in range(64):
        # The zeros fill the box their rows and columns span, 4 to 8 pixels a side.
        box = np.outer(rows[n], cols[n])
        assert np.array_equal(zero[n, ..., 0], box)
        for side in (rows[n], cols[n]):
            run = np.flatnonzero(side)
            assert 4 <= len(run) <= 8 and run[-1] - run[0] == len(run) - 1
        assert (out[n][~zero[n]] == 1).all()
    assert (zero.sum((1, 2, 3)) < 8 * 8 * 3).any()  # some squares are clipped by a border
    assert len({tuple(np.flatnonzero(r)) for r in rows}) > 10  # and they move around
    again = augment.random_cutout(jax.random.key(0), images, size=8)
    assert np.array_equal(out, again)


def test_normalize_centres_the_cifar_mean():
    mean = jnp.asarray(types.CIFAR10_MEAN) * 255
    x = jnp.broadcast_to(mean, (1, 2, 2, 3))
    assert jnp.allclose(types.normalize(x), 0.0, atol=1e-5)


def load_folder(root, split='train'):
    return sources.load_split(f'folder:{root}', split)


def test_empty_class_folder_is_named(tmp_path):
    root = write_image_folder(tmp_path / 'data')
    os.makedirs(os.path.join(root, 'train', 'c'))
    with pytest.raises(InputError, match='class folder .*train/c has no images'):
        load_folder(root)


def test_file_that_is_not_an_image_is_named(tmp_path):
    root = write_image_folder(tmp_path / 'data')
    with open(os.path.join(root, 'train', 'b', 'notes.png'), 'w') as f:
        f.write('not an image at all')
    with pytest.raises(InputError, match='train/b/notes.png: not a readable image'):
        load_folder(root)


def test_truncated_image_is_named(tmp_path):
    root = write_image_folder(tmp_path / 'data', fmt='jpg')
    path = os.path.join(root, 'train', 'a', '1.jpg')
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 3)
    with pytest.raises(InputError, match='train/a/1.jpg: not a readable image'):
        load_folder(root)


def test_image_of_another_size_is_named_with_its_size(tmp_path):
    root = write_image_folder(tmp_path / 'data')
    write_image_folder(tmp_path / 'big', classes=('a',), per_class=1, shape=(48, 40, 3))
    os.replace(tmp_path / 'big' / 'train' / 'a' / '0.png',
               os.path.join(root, 'train', 'a', 'x.png'))
    with pytest.raises(InputError, match=r'train/a/x.png: is 40x48, expected 32x32'):
        load_folder(root)


def test_grayscale_and_rgba_images_are_converted_to_rgb(tmp_path):
    # The documented conversion: grayscale is repeated over R, G, B; alpha is dropped.
    root = write_image_folder(tmp_path / 'data', classes=('a',), per_class=1, shape=(32, 32, 1))
    write_image_folder(tmp_path / 'rgba', classes=('a',), per_class=1, shape=(32, 32, 4), seed=3)
    os.replace(tmp_path / 'rgba' / 'train' / 'a' / '0.png',
               os.path.join(root, 'train', 'a', 'z.png'))
    split = load_folder(root)
    assert split.images.shape == (2, 32, 32, 3)
    gray = [img for img in split.images if np.array_equal(img[..., 0], img[..., 2])]
    assert len(gray) == 1


def test_folder_cache_is_reused_and_invalidated_by_a_changed_file(tmp_path, capsys):
    root = write_image_folder(tmp_path / 'data')
    cache = str(tmp_path / 'cache')
    first = sources.load_split(f'folder:{root}', 'train', cache_dir=cache)
    assert len(os.listdir(cache)) == 1
    assert 'Decoding 6 images of train' in capsys.readouterr().out
    again = sources.load_split(f'folder:{root}', 'train', cache_dir=cache)
    assert 'Decoding' not in capsys.readouterr().out  # read from the cache
    assert np.array_equal(first.images, again.images) and np.array_equal(first.labels, again.labels)
    write_image_folder(tmp_path / 'data', classes=('a',), per_class=1, seed=9)  # rewrites a/0.png
    changed = sources.load_split(f'folder:{root}', 'train', cache_dir=cache)
    assert 'Decoding 6 images of train' in capsys.readouterr().out
    assert len(os.listdir(cache)) == 2 and not np.array_equal(changed.images, first.images)


@pytest.mark.parametrize('how', ['zero_length', 'truncated'])
def test_damaged_folder_cache_is_set_aside_and_rebuilt(tmp_path, how, capsys):
    root = write_image_folder(tmp_path / 'data')
    cache = tmp_path / 'cache'
    first = sources.load_split(f'folder:{root}', 'train', cache_dir=str(cache))
    [entry] = os.listdir(cache)
    size = os.path.getsize(cache / entry)
    with open(cache / entry, 'r+b') as f:
        f.truncate(0 if how == 'zero_length' else size // 2)
    again = sources.load_split(f'folder:{root}', 'train', cache_dir=str(cache))
    assert np.array_equal(first.images, again.images) and np.array_equal(first.labels, again.labels)
    assert f'{cache / entry} is damaged' in capsys.readouterr().out
    assert os.path.getsize(cache / entry) == size  # rebuilt
    [aside] = [name for name in os.listdir(cache) if '.damaged.' in name]
    assert aside.startswith(entry)


def test_offline_catalog_dataset_fails_in_seconds_with_the_folder_hint(tmp_path, monkeypatch,
                                                                       caplog):
    def no_network(address, timeout=None):
        raise OSError('network is unreachable')

    monkeypatch.setattr(tfds_source.socket, 'create_connection', no_network)
    with pytest.raises(InputError, match=r"config.data.dataset='cifar10' is not in .* and "
                                         r"www.cs.toronto.edu cannot be reached .* "
                                         r"--config.data.dataset=folder:"):
        sources.load_split('cifar10', 'test', data_dir=str(tmp_path))
    # The hint is the only line: TFDS's warning that the folder has no dataset_info.json
    # (what it logs for every catalog dataset not yet downloaded) is dropped.
    assert not [r for r in caplog.records if 'dataset_info.json' in r.getMessage()]
