import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import smoke
from conftest import rgb_folder, write_image_folder
from flax_cifar import plots
from flax_cifar.data import types
from flax_cifar.errors import InputError
from flax_cifar.evaluation import inference, precise_bn, report, views
from flax_cifar.training import train
from flax_cifar.workdir import metric_writers


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    config = smoke.get_config()
    config.data.dataset = rgb_folder(root, train_per_class=32)
    config.train.epochs = 4
    config.average.ema_decay = 0.9  # evaluation reports the average and the weights themselves
    config.whitening.layer = 'stem_conv'  # restored with its frozen first conv
    config.eval.translate = 1  # every evaluation averages flips and 1-pixel shifts
    workdir = str(tmp_path_factory.mktemp('workdir'))
    train.train_and_evaluate(config, workdir)
    return workdir, str(root)


@pytest.mark.slow
def test_evaluate_best_checkpoint_reports_per_class_and_confusion(trained, capsys):
    workdir, _ = trained
    records = metric_writers.read_records(os.path.join(workdir, 'metrics.jsonl'))
    best = max(records, key=lambda r: (r['test_accuracy'], r['step']))  # ties: the later
    result = report.evaluate_checkpoint(workdir, 'best')
    assert result['step'] == best['step']
    assert result['accuracy'] == pytest.approx(best['test_accuracy'])
    matrix = result['confusion_matrix']
    assert matrix.shape == (3, 3) and matrix.sum() == 30 and (matrix.sum(1) == 10).all()
    assert np.trace(matrix) == result['correct']
    out = capsys.readouterr().out
    assert 'Test set: Average loss:' in out and 'confusion' in out
    assert 0 <= result['without_ema_accuracy'] <= 1
    assert (f"config.average.ema_decay=0.9); the weights themselves: "
            f"{100 * result['without_ema_accuracy']:.2f}%") in out
    assert all(name in out for name in ('r', 'g', 'b'))
    assert result['views'] == (True, 1)
    assert result['view_accuracies']['flip and 1-pixel shifts'] == result['accuracy']
    assert 'configured flip=True, translate=1' in out and 'none: ' in out
    plot = os.path.join(workdir, f"confusion_matrix_step{result['step']}.png")
    assert os.path.getsize(plot) > 1000


@pytest.mark.slow  # uses the trained workdir
def test_latest_checkpoint_is_the_last_step(trained):
    workdir, _ = trained
    assert report.evaluate_checkpoint(workdir, 'latest')['step'] == 4 * 12


@pytest.mark.slow
def test_view_logits_compute_each_view_once_and_average_as_training_does(trained):
    workdir, _ = trained
    state = inference.restore_for_inference(workdir, 'latest')[0]
    images = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    logits = inference.ViewLogits(state, images, batch_size=4)  # a partial last batch
    for flip, translate in [(False, 0), (True, 0), (True, 1), (False, 2)]:
        expected = jax.nn.log_softmax(views.predict_logits(
            state, types.normalize(jnp.asarray(images)), flip, translate=translate))
        np.testing.assert_allclose(logits.log_probabilities(flip, translate), expected,
                                   rtol=1e-5, atol=1e-5)
    # plain and mirrored, shifted by 0, +1 and -1; unmirrored only, by +2 and -2
    assert sorted(logits.logits) == [(-2, False), (-1, False), (-1, True), (0, False), (0, True),
                                    (1, False), (1, True), (2, False)]


@pytest.mark.slow  # uses the trained workdir
def test_predict_names_classes_with_probabilities(trained, tmp_path):
    workdir, root = trained
    paths = [os.path.join(root, 'test', name, '0.png') for name in ('b', 'g', 'r')]
    write_image_folder(tmp_path / 'big', classes=('r',), per_class=1, shape=(64, 64, 3))
    paths.append(str(tmp_path / 'big' / 'train' / 'r' / '0.png'))  # resized to 32x32
    predictions = inference.predict_files(workdir, paths)
    assert [p[0] for p in predictions] == paths
    assert all(name in ('r', 'g', 'b') and 0 < prob <= 1 for _, name, prob in predictions)
    assert [name for _, name, _ in predictions[:3]] == ['b', 'g', 'r']


@pytest.mark.slow  # uses the trained workdir
def test_predict_names_a_bad_file(trained, tmp_path):
    workdir, _ = trained
    bad = tmp_path / 'x.png'
    bad.write_text('nope')
    with pytest.raises(InputError, match='x.png: not a readable image'):
        inference.predict_files(workdir, [str(bad)])


def test_workdir_without_checkpoints_is_named(tmp_path):
    with pytest.raises(InputError, match='no checkpoints in'):
        report.evaluate_checkpoint(str(tmp_path))


@pytest.mark.slow  # uses the trained workdir
def test_training_writes_curves_and_they_can_be_redrawn(trained):
    workdir, _ = trained
    path = os.path.join(workdir, 'curves.png')
    assert os.path.getsize(path) > 10_000
    os.remove(path)
    assert plots.plot_curves(workdir) == f'{workdir}/curves.png' and os.path.exists(path)


def test_the_reported_average_is_named_by_the_fields_that_made_it():
    from configs import default
    assert report.evaluated_average(default.get_config().average).startswith(
        "Lookahead's slow weights (config.average.lookahead.every=")  # the default's average
    config = smoke.get_config()
    config.average.ema_decay = 0.99
    assert report.evaluated_average(config.average) == (
        'Moving average of the weights (config.average.ema_decay=0.99)')


def test_precise_bn_statistics_are_what_batchnorm_normalizes_a_batch_with():
    """Over one batch, each BatchNorm's recomputed statistics are those it normalized with
    in train mode (read back from its running-average update); over two batches, the first
    layer's are the two batches' images pooled."""
    config = smoke.get_config()
    model = train.train_state.model_of(config, 3)
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    variables = {**variables, 'batch_stats': jax.tree.map(
        lambda s: s + jax.random.uniform(jax.random.key(1), s.shape), variables['batch_stats'])}
    key = jax.random.key(2)
    stats = precise_bn.precise_batch_stats(model, variables, images, 1, 12, key)
    rows = np.sort(np.asarray(jax.random.permutation(key, 24))[:12])
    _, updated = model.apply(variables, types.normalize(images[rows]), train=True,
                             mutable=['batch_stats'], rngs={'dropout': jax.random.key(0)})
    momentum = 0.9  # layers.BatchNorm's: new = momentum * old + (1 - momentum) * batch
    used = jax.tree.map(lambda new, old: (new - momentum * old) / (1 - momentum),
                        updated['batch_stats'], variables['batch_stats'])
    assert jax.tree.structure(stats) == jax.tree.structure(used)
    for ours, theirs in zip(jax.tree.leaves(stats), jax.tree.leaves(used)):
        np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=2e-4)
    pooled = precise_bn.precise_batch_stats(model, variables, images, 2, 12, key)
    first = pooled['stem_bn']  # the stem conv's output over all 24 images
    conv = nn.Conv(8, (3, 3), padding=1, use_bias=False)  # DSResNet's stem_conv
    outputs = conv.apply({'params': variables['params']['stem_conv']}, types.normalize(images))
    outputs = np.asarray(outputs, np.float64).reshape(-1, 8)
    np.testing.assert_allclose(first['mean'], outputs.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(first['var'], outputs.var(0), rtol=1e-3, atol=1e-5)


@pytest.mark.slow  # uses the trained workdir
def test_evaluate_with_precise_bn_reports_both_statistics(trained, capsys):
    workdir, _ = trained
    stored = report.evaluate_checkpoint(workdir, 'best')
    precise = report.evaluate_checkpoint(workdir, 'best', precise_bn_batches=3)
    assert precise['stored_statistics_accuracy'] == pytest.approx(stored['accuracy'])
    assert 'PreciseBN: BatchNorm statistics recomputed over 3 training batches of 8' in (
        capsys.readouterr().out)
    state, config, names, _ = inference.restore_for_inference(workdir, 'best')
    recomputed = precise_bn.with_precise_stats(
        state, train.train_state.model_of(config, len(names)),
        np.zeros((24, 32, 32, 3), np.uint8), 3, 8, 0)
    # The average's statistics change (the evaluated ones); the weights' own stay.
    assert not jax.tree.all(jax.tree.map(jnp.array_equal, recomputed.ema['batch_stats'],
                                         state.ema['batch_stats']))
    assert jax.tree.all(jax.tree.map(jnp.array_equal, recomputed.batch_stats,
                                     state.batch_stats))
