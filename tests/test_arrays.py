"""The decoded-array form: written from any dataset, read with TensorFlow never imported."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, rgb_folder, without_tf, write_image_folder
from flax_cifar.data import sources, to_arrays
from flax_cifar.errors import InputError
from flax_cifar.workdir import metric_writers


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return rgb_folder(tmp_path_factory.mktemp('data'), train_per_class=40)


@pytest.fixture(scope='module')
def written(folder, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('arrays') / 'rgb')
    to_arrays.write(folder, out)
    return out


def test_arrays_hold_exactly_what_the_folder_reads(folder, written):
    for split in ('train', 'test'):
        original = sources.load_split(folder, split)
        copy = sources.load_split(f'arrays:{written}', split)
        np.testing.assert_array_equal(copy.images, original.images)
        np.testing.assert_array_equal(copy.labels, original.labels)
        assert copy.labels.dtype == np.int32 and copy.images.dtype == np.uint8
    assert sources.class_names(f'arrays:{written}') == ['b', 'g', 'r']
    assert sources.num_examples(f'arrays:{written}', 'train') == 120
    rows = sources.load_split(f'arrays:{written}', 'train', rows=(30, 50))
    np.testing.assert_array_equal(rows.images,
                                  sources.load_split(folder, 'train').images[30:50])


def test_existing_output_is_refused_and_left_as_it_was(folder, written):
    before = sorted(os.listdir(written))
    with pytest.raises(InputError, match=f'--out {written} exists'):
        to_arrays.write(folder, written)
    assert sorted(os.listdir(written)) == before


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    root = write_image_folder(tmp_path / 'data', splits=('train',))
    with pytest.raises(InputError, match="no 'test' split"):
        to_arrays.write(f'folder:{root}', str(tmp_path / 'out'))
    assert sorted(os.listdir(tmp_path)) == ['data']


def test_damaged_arrays_are_named(written, tmp_path):
    copy = tmp_path / 'copy'
    os.makedirs(copy)
    for name in os.listdir(written):
        with open(os.path.join(written, name), 'rb') as src, open(copy / name, 'wb') as dst:
            dst.write(src.read())
    np.save(copy / 'test_labels.npy', np.zeros(3, np.int32))
    with pytest.raises(InputError, match=r'test_labels.npy: int32 \(3,\), expected int32 \(30,\)'):
        sources.load_split(f'arrays:{copy}', 'test')
    with pytest.raises(InputError, match="has no 'validation' split; it has \\['test', 'train'\\]"):
        sources.load_split(f'arrays:{copy}', 'validation')
    (copy / 'info.json').write_text('{"format": "flax_cifar arrays 1", ')
    with pytest.raises(InputError, match='info.json: not readable'):
        sources.num_examples(f'arrays:{copy}', 'test')
    with pytest.raises(InputError, match=f'arrays:{tmp_path}: no info.json there'):
        sources.num_examples(f'arrays:{tmp_path}', 'test')


# What TensorFlow's and XLA's start-up notices contain (absl C++ log prefixes, oneDNN, CUDA).
BANNER_MARKERS = ('oneDNN', 'absl::InitializeLog', 'I0000 ', 'W0000 ', 'E0000 ', 'cuDNN',
                  'cuBLAS', 'TF-TRT', 'Unable to register')


@pytest.mark.slow
def test_train_evaluate_predict_from_arrays_without_tensorflow(folder, written, tmp_path):
    common = ['--config', os.path.join(REPO, 'configs/smoke.py'), '--config.train.epochs=1']
    arrays_run, folder_run = str(tmp_path / 'arrays_run'), str(tmp_path / 'folder_run')
    trained = without_tf(*common, f'--config.data.dataset=arrays:{written}', '--workdir',
                         arrays_run)
    assert trained.returncode == 0, trained.stderr[-2000:]
    # The same rows in the same order: the run equals one from the folder itself.
    folder_output = subprocess.run([sys.executable, 'main.py', *common,
                                    f'--config.data.dataset={folder}', '--workdir', folder_run],
                                   check=True, capture_output=True, text=True, cwd=REPO)
    # A normal run prints its own lines only: no TensorFlow or XLA start-up banners.
    banners = [line for line in (folder_output.stdout + folder_output.stderr).splitlines()
               if any(marker in line for marker in BANNER_MARKERS)]
    assert not banners, banners
    [from_arrays] = metric_writers.read_records(os.path.join(arrays_run, 'metrics.jsonl'))
    [from_folder] = metric_writers.read_records(os.path.join(folder_run, 'metrics.jsonl'))
    for key in ('train_loss', 'test_loss', 'test_accuracy'):
        assert from_arrays[key] == from_folder[key], key
    assert os.listdir(os.path.join(arrays_run, 'tensorboard'))  # events, without TensorFlow

    evaluated = without_tf('--mode=evaluate', '--workdir', arrays_run)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert f"Accuracy: {round(from_arrays['test_accuracy'] * 30)}/30" in evaluated.stdout

    image = os.path.join(folder.removeprefix('folder:'), 'test', 'r', '0.png')
    predicted = without_tf('--mode=predict', '--workdir', arrays_run, image)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    path, name, probability = predicted.stdout.splitlines()[0].split('\t')
    assert path == image and name in ('b', 'g', 'r') and 0 < float(probability) <= 1


def test_a_tfds_dataset_without_tensorflow_says_what_to_install(tmp_path):
    result = without_tf('--config', os.path.join(REPO, 'configs/smoke.py'),
                        '--config.data.dataset=cifar10', '--workdir', str(tmp_path / 'w'))
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith('error: reading a TFDS or folder dataset needs tensorflow')
    assert "pip install -e '.[tfds]'" in line and 'arrays:PATH' in line
    assert not os.path.exists(tmp_path / 'w')
