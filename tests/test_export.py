"""Export to LiteRT (float32, int8) and ONNX, each run by its own runtime against JAX."""
import glob
import json
import os

import jax2onnx  # noqa: F401  (a plain import: missing, the tests fail rather than skip)
import numpy as np
import pytest

from configs import smoke
from conftest import rgb_folder, without_tf
from flax_cifar import export, exported, ship
from flax_cifar.data import sources
from flax_cifar.errors import InputError
from flax_cifar.evaluation import inference
from flax_cifar.training import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def export_run(tmp_path_factory):
    config = smoke.get_config()
    config.data.dataset = rgb_folder(tmp_path_factory.mktemp('data'), train_per_class=40)
    config.train.epochs = 3
    config.eval.flip, config.eval.translate = True, 1  # every kind of test-time view
    workdir = str(tmp_path_factory.mktemp('workdir'))
    train.train_and_evaluate(config, workdir)
    return workdir, config.data.dataset, export.export(workdir, calibration_size=120)


def test_every_format_agrees_with_the_jax_model(export_run):
    workdir, dataset, report = export_run
    state, config, class_names, _ = inference.restore_for_inference(workdir)
    test = sources.load_split(dataset, 'test')
    jax_logits = np.asarray(export.logits_fn(state, config, len(class_names))(test.images))
    for name in (exported.FLOAT_TFLITE, exported.ONNX):
        logits = exported.Runtime(os.path.join(workdir, 'export', name)).scores(test.images)
        np.testing.assert_allclose(logits, jax_logits, atol=1e-4 * np.abs(jax_logits).max())
    int8 = exported.Runtime(os.path.join(workdir, 'export', exported.INT8_TFLITE))
    assert int8.input['dtype'] == np.uint8 and tuple(int8.input['shape']) == (1, 32, 32, 3)
    same_class = np.mean(int8.scores(test.images).argmax(-1) == jax_logits.argmax(-1))
    assert same_class >= 0.9, same_class
    # The report measured the same things.
    assert report['jax_test_accuracy'] == pytest.approx(
        np.mean(jax_logits.argmax(-1) == test.labels))
    assert report['models'][exported.INT8_TFLITE]['agrees_with_jax'] == pytest.approx(same_class)
    for name, model in report['models'].items():
        assert model['size_kb'] == pytest.approx(
            os.path.getsize(os.path.join(workdir, 'export', name)) / 1024)
        assert model['latency_ms'] > 0
    with open(os.path.join(workdir, 'export', exported.INFO)) as f:
        assert json.load(f)['class_names'] == ['b', 'g', 'r']


def test_exported_models_give_the_checkpoints_class_on_every_image_file(export_run):
    """The deployed model is the evaluated one: its test-time views averaged in the graph."""
    workdir, dataset, report = export_run
    assert report['views'] == 'the image, its mirror image, 1-pixel shifts'
    files = sorted(glob.glob(os.path.join(dataset.removeprefix('folder:'), 'test', '*', '*')))
    from_checkpoint = [name for _, name, _ in inference.predict_files(workdir, files)]
    for name in (exported.FLOAT_TFLITE, exported.ONNX):
        predicted = exported.predict_files(os.path.join(workdir, 'export', name), files)
        assert [p for _, p, _ in predicted] == from_checkpoint, name
    int8 = exported.predict_files(os.path.join(workdir, 'export', exported.INT8_TFLITE), files)
    assert np.mean([p == c for (_, p, _), c in zip(int8, from_checkpoint)]) >= 0.9


def test_a_shipped_folder_predicts_as_its_run_and_names_no_local_path(export_run, tmp_path):
    workdir, dataset, _ = export_run
    shipped = str(tmp_path / 'shipped')
    ship.ship(workdir, shipped, dataset)
    files = sorted(glob.glob(os.path.join(dataset.removeprefix('folder:'), 'test', '*', '*')))
    assert inference.predict_files(shipped, files) == inference.predict_files(workdir, files)
    markers = glob.glob(os.path.join(shipped, 'checkpoints', '**', 'commit_success.txt'),
                        recursive=True)
    assert markers and not any(str(tmp_path) in open(m).read() for m in markers)
    evaluation = json.load(open(os.path.join(shipped, ship.EVALUATION)))
    assert set(evaluation['per_class_accuracy']) == {'r', 'g', 'b'}
    assert len(open(os.path.join(shipped, ship.METRICS)).readlines()) == 3  # one per epoch
    with pytest.raises(InputError, match='exists'):
        ship.ship(workdir, shipped, dataset)  # never into a folder already there


def test_one_view_export_differs_from_the_averaged_one(export_run, tmp_path):
    workdir, dataset, _ = export_run
    state, config, class_names, _ = inference.restore_for_inference(workdir)
    images = sources.load_split(dataset, 'test').images
    averaged = np.asarray(export.logits_fn(state, config, len(class_names))(images))
    one = np.asarray(export.logits_fn(state, config, len(class_names), one_view=True)(images))
    assert not np.allclose(averaged, one)


def test_a_tflite_model_predicts_without_tensorflow(export_run):
    workdir, dataset, _ = export_run
    image = os.path.join(dataset.removeprefix('folder:'), 'test', 'g', '0.png')
    [(_, expected, _)] = inference.predict_files(workdir, [image])
    for name in (exported.INT8_TFLITE, exported.FLOAT_TFLITE):
        result = without_tf('--mode=predict',
                            f'--exported={os.path.join(workdir, "export", name)}', image)
        assert result.returncode == 0, result.stderr[-2000:]
        path, predicted, probability = result.stdout.splitlines()[-2].split('\t')
        assert path == image and 0 < float(probability) <= 1
        if name == exported.FLOAT_TFLITE:
            assert predicted == expected


def test_missing_converter_is_named_with_the_install_command(export_run, monkeypatch):
    workdir, _, _ = export_run
    find_spec = export.importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, 'find_spec',
                        lambda name: None if name == 'jax2onnx' else find_spec(name))
    with pytest.raises(InputError, match=r"--mode=export needs jax2onnx: pip install -e "
                                         r"'\.\[export\]' && pip install --no-deps jax2onnx"):
        export.export(workdir)


def test_unconvertible_model_is_refused_naming_the_layer(export_run, monkeypatch):
    workdir, _, _ = export_run

    def failing(fn, calibration=None):
        raise RuntimeError('loc("jit(fn)/DSResNet/stage2_sepconv/depthwise/conv"): error: '
                           "'tfl.conv' op is not supported")

    monkeypatch.setattr(export, 'to_tflite', failing)
    with pytest.raises(InputError) as raised:
        export.export(workdir, calibration_size=10)
    message = str(raised.value)
    assert '\n' not in message
    assert message.startswith('export: LiteRT cannot convert model_float32.tflite, at layer '
                              'stage2_sepconv/depthwise:')


@pytest.mark.parametrize('suffix, runtime', [('tflite', 'ai_edge_litert'),
                                             ('onnx', 'onnxruntime')])
def test_an_exported_model_without_its_runtime_says_what_to_install(suffix, runtime, tmp_path,
                                                                    monkeypatch):
    import importlib.util
    model = tmp_path / f'model.{suffix}'
    model.write_bytes(b'not read: the runtime is checked first')
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *args: None if name == runtime else find_spec(name, *args))
    with pytest.raises(InputError, match=rf"needs {runtime}, in the deploy extra: "
                                         r"pip install -e '\.\[deploy\]'"):
        exported.Runtime(str(model))
