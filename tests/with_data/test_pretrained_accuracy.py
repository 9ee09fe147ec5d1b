"""The shipped model on the real CIFAR-10 test split: collected only where
FLAX_CIFAR_TEST_CIFAR10 names the dataset's folder (ImageFolder layout), since the suite
itself needs no dataset."""
import json
import os

import numpy as np

from conftest import REPO
from flax_cifar import exported
from flax_cifar.data import sources
from flax_cifar.evaluation import report

SHIPPED = os.path.join(REPO, 'pretrained', 'default')


def test_shipped_models_evaluate_to_their_stated_accuracies():
    folder = os.environ.get('FLAX_CIFAR_TEST_CIFAR10')
    assert folder, 'set FLAX_CIFAR_TEST_CIFAR10 to a CIFAR-10 folder (root/{train,test}/<class>)'
    dataset = f'folder:{folder}'
    with open(os.path.join(SHIPPED, exported.INFO)) as f:
        stated = json.load(f)
    result = report.evaluate_checkpoint(SHIPPED, 'best', dataset)
    assert result['count'] == stated['test_images']
    assert result['accuracy'] == stated['jax_test_accuracy']
    test = sources.load_split(dataset, 'test')
    scores = exported.Runtime(os.path.join(SHIPPED, exported.INT8_TFLITE)).scores(test.images)
    assert (float(np.mean(scores.argmax(-1) == test.labels))
            == stated['models'][exported.INT8_TFLITE]['test_accuracy'])
