"""The shipped model (pretrained/default): it is the default network, it restores and predicts
what it predicted when shipped, and the accuracy the README states is the one measured."""
import json
import os

import numpy as np
import PIL.Image

from configs import default
from conftest import REPO
from flax_cifar import exported, models, ship
from flax_cifar.evaluation import inference
from flax_cifar.workdir import checkpointing

SHIPPED = os.path.join(REPO, 'pretrained', 'default')


def recorded(name: str) -> dict:
    with open(os.path.join(SHIPPED, name)) as f:
        return json.load(f)


def test_shipped_model_is_the_default_network():
    """Fails when configs/default.py's network changes and pretrained/ is not refreshed."""
    state, config, class_names, _ = inference.restore_for_inference(SHIPPED, 'best')
    assert checkpointing.architecture_mismatch(checkpointing.architecture(config),
                                               checkpointing.architecture(
                                                   default.get_config())) is None
    assert models.param_count(state.params) == 192_544 and len(class_names) == 10


def test_shipped_models_predict_what_they_predicted_when_shipped(tmp_path):
    fingerprint, images = recorded(ship.FINGERPRINT), ship.fingerprint_images()
    np.testing.assert_allclose(inference.log_probabilities(SHIPPED, images)[0],
                               fingerprint['log_probabilities'], atol=1e-3)
    paths = []
    for i, image in enumerate(images):  # the int8 model through image files, as a user runs it
        paths.append(str(tmp_path / f'{i}.png'))
        PIL.Image.fromarray(image).save(paths[-1])
    names = recorded(exported.INFO)['class_names']
    predicted = exported.predict_files(os.path.join(SHIPPED, exported.INT8_TFLITE), paths)
    assert [name for _, name, _ in predicted] == [names[c] for c in fingerprint['int8_classes']]


def test_readme_states_the_measured_accuracies():
    report = recorded(exported.INFO)
    int8 = report['models'][exported.INT8_TFLITE]['test_accuracy']
    with open(os.path.join(REPO, 'README.md')) as f:
        readme = f.read()
    with open(os.path.join(SHIPPED, 'README.md')) as f:
        provenance = f.read()
    for text in (readme, provenance):
        assert f"{100 * report['jax_test_accuracy']:.2f}%" in text
        assert f'{100 * int8:.2f}%' in text
