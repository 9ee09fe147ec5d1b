"""A trained workdir made small enough to ship: one checkpoint of its evaluated weights and
BatchNorm statistics (no optimizer state), its config with the data paths cleared, and its
int8 LiteRT model with export.json, measured on the test split.

  python -m flax_cifar.ship WORKDIR DESTINATION --dataset=folder:/path/to/cifar10

DESTINATION then serves `--mode=evaluate`, `--mode=predict` and `--mode=export` as a workdir
does, and `--mode=predict --exported DESTINATION/model_int8.tflite`. fingerprint.json holds
the float model's log-probabilities of a few generated images, for tests to check against;
metrics.jsonl the run's epochs and evaluation.json `--mode=evaluate`'s record of the shipped
checkpoint (per class, confusion matrix, every test-time view), for readers without the data.
"""
import argparse
import json
import os
import pathlib
import shutil
import sys

import numpy as np
from etils import epath

from flax_cifar import export, exported
from flax_cifar.errors import InputError
from flax_cifar.evaluation import inference, report
from flax_cifar.workdir import checkpointing, metric_writers

FINGERPRINT = 'fingerprint.json'
EVALUATION = 'evaluation.json'
METRICS = 'metrics.jsonl'


def fingerprint_images(count: int = 8) -> np.ndarray:
    """Generated uint8 images (smooth colour fields under noise): no dataset needed."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:32] / 31.0
    fields = [np.stack([np.cos(a * x + b * y + c) for a, b, c in rng.uniform(0, 6, (3, 3))], -1)
              for _ in range(count)]
    noise = rng.normal(0, 0.15, (count, 32, 32, 3))
    return np.clip((np.stack(fields) * 0.4 + 0.5 + noise) * 255, 0, 255).astype(np.uint8)


def ship(workdir: str, destination: str, dataset: str, which: str = 'best') -> dict:
    """Writes DESTINATION (which must not exist) and returns its export.json."""
    if os.path.exists(destination):
        raise InputError(f'{destination}: exists; ship into a new folder')
    state, config, class_names, step = inference.restore_for_inference(workdir, which)
    config.data.dataset, config.data.tfds_data_dir, config.data.cache_dir = 'cifar10', None, None
    checkpoints = checkpointing.Checkpoints(destination, keep=1)
    # The source's test accuracy at that step, so that the step is also the folder's 'best'.
    metrics = os.path.join(workdir, METRICS)
    accuracy = next(r['test_accuracy'] for r in metric_writers.read_records(metrics)
                    if r.get('step') == step)
    checkpoints.save(step, state, checkpointing.run_meta(config, class_names), accuracy)
    checkpoints.close()
    for marker in pathlib.Path(destination, 'checkpoints').rglob(checkpointing.COMMIT_MARKER):
        marker.write_text('Checkpoint commit was successful')  # not this machine's path
    models = export.export(destination, dataset=dataset)
    out = os.path.join(destination, 'export')
    shutil.move(os.path.join(out, exported.INT8_TFLITE), destination)
    models['models'] = {exported.INT8_TFLITE: models['models'][exported.INT8_TFLITE]}
    epath.Path(destination, exported.INFO).write_text(json.dumps(models, indent=1))
    shutil.rmtree(out)
    shutil.copyfile(metrics, os.path.join(destination, METRICS))
    evaluation = report.evaluate_checkpoint(destination, 'best', dataset)
    for plot in epath.Path(destination).glob('confusion_matrix_*.png'):
        plot.unlink()  # the record holds the matrix; evaluate draws it again
    epath.Path(destination, EVALUATION).write_text(json.dumps(
        report.as_record(evaluation, class_names), indent=1))
    images = fingerprint_images()
    epath.Path(destination, FINGERPRINT).write_text(json.dumps({
        'images': 'flax_cifar.ship.fingerprint_images()',
        'log_probabilities': np.round(inference.log_probabilities(destination, images)[0],
                                      6).tolist(),
        'int8_classes': exported.Runtime(os.path.join(destination, exported.INT8_TFLITE))
        .scores(images).argmax(-1).tolist()}, indent=1))
    return models


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m flax_cifar.ship',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('workdir', help='the trained run')
    parser.add_argument('destination', help='a new folder')
    parser.add_argument('--dataset', required=True,
                        help='its test split measures the models, e.g. folder:/path/to/cifar10')
    args = parser.parse_args(argv)
    try:
        print(export.format_report(ship(args.workdir, args.destination, args.dataset)))
    except InputError as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
