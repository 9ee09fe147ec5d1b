"""Export to LiteRT (float32, int8) and ONNX, each run by its own runtime against JAX."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip('jax2onnx')  # installed with --no-deps by .ci/run (see flax_cifar/export.py)

from configs import smoke  # noqa: E402
from conftest import REPO, rgb_folder  # noqa: E402
from flax_cifar import export
from flax_cifar.data import sources
from flax_cifar.errors import InputError  # noqa: E402
from flax_cifar.evaluation import inference
from flax_cifar.training import train  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    config = smoke.get_config()
    config.dataset = rgb_folder(tmp_path_factory.mktemp('data'), train_per_class=40)
    config.num_epochs = 3
    workdir = str(tmp_path_factory.mktemp('workdir'))
    train.train_and_evaluate(config, workdir)
    return workdir, config.dataset, export.export(workdir, calibration_size=120)


def test_every_format_agrees_with_the_jax_model(exported):
    workdir, dataset, report = exported
    state, config, class_names, _ = inference.restore_for_inference(workdir)
    test = sources.load_split(dataset, 'test')
    jax_logits = np.asarray(export.logits_fn(state, config, len(class_names))(test.images))
    for name in (export.FLOAT_TFLITE, export.ONNX):
        logits = export.Runtime(os.path.join(workdir, 'export', name)).scores(test.images)
        np.testing.assert_allclose(logits, jax_logits, atol=1e-4 * np.abs(jax_logits).max())
    int8 = export.Runtime(os.path.join(workdir, 'export', export.INT8_TFLITE))
    assert int8.input['dtype'] == np.uint8 and tuple(int8.input['shape']) == (1, 32, 32, 3)
    same_class = np.mean(int8.scores(test.images).argmax(-1) == jax_logits.argmax(-1))
    assert same_class >= 0.9, same_class
    # The report measured the same things.
    assert report['jax_test_accuracy'] == pytest.approx(
        np.mean(jax_logits.argmax(-1) == test.labels))
    assert report['models'][export.INT8_TFLITE]['agrees_with_jax'] == pytest.approx(same_class)
    for name, model in report['models'].items():
        assert model['size_kb'] == pytest.approx(
            os.path.getsize(os.path.join(workdir, 'export', name)) / 1024)
        assert model['latency_ms'] > 0
    with open(os.path.join(workdir, 'export', export.INFO)) as f:
        assert json.load(f)['class_names'] == ['b', 'g', 'r']


def test_predict_from_an_exported_file(exported):
    workdir, dataset, _ = exported
    image = os.path.join(dataset.removeprefix('folder:'), 'test', 'g', '0.png')
    from_checkpoint = inference.predict_files(workdir, [image])
    for name in (export.FLOAT_TFLITE, export.INT8_TFLITE, export.ONNX):
        result = subprocess.run(
            [sys.executable, 'main.py', '--mode=predict',
             f'--exported={os.path.join(workdir, "export", name)}', image],
            capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stderr[-2000:]
        path, predicted, probability = result.stdout.splitlines()[-1].split('\t')
        assert path == image and predicted == from_checkpoint[0][1]
        assert 0 < float(probability) <= 1


def test_missing_converter_is_named_with_the_install_command(exported, monkeypatch):
    workdir, _, _ = exported
    find_spec = export.importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, 'find_spec',
                        lambda name: None if name == 'jax2onnx' else find_spec(name))
    with pytest.raises(InputError, match=r"--mode=export needs jax2onnx: pip install -e "
                                         r"'\.\[export\]' && pip install --no-deps jax2onnx"):
        export.export(workdir)


def test_unconvertible_model_is_refused_naming_the_layer(exported, monkeypatch):
    workdir, _, _ = exported

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
