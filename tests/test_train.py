import collections
import contextlib
import glob
import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import airnet, seednet
from conftest import rgb_folder, smoke_config
from flax_cifar import xla_options
from flax_cifar.data import augment, host_data, types
from flax_cifar.evaluation import evaluate, views
from flax_cifar.parallel import data_parallel
from flax_cifar.state import optim, train_state
from flax_cifar.training import averaging, progress, train
from flax_cifar.training import step as step_lib
from flax_cifar.workdir import compat


def make_state(config, ema=False):
    model = train_state.model_of(config)
    tx = optim.create_optimizer(config, optim.create_learning_rate_fn(config.optim, 10))
    return train_state.create_train_state(jax.random.key(0), model, tx, ema=ema)


def random_batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {'image': jnp.asarray(rng.normal(size=(n, 32, 32, 3)), jnp.float32),
            'label': jnp.asarray(rng.integers(0, 10, n), jnp.int32)}


def test_jitted_train_step_updates_params_stats_and_step():
    config = smoke_config()
    state = make_state(config)
    step = jax.jit(step_lib.train_step)
    new_state, metrics = step(state, random_batch(), jax.random.key(1), 0.1)
    assert int(new_state.step) == 1
    assert np.isfinite(float(metrics['loss'])) and 0 <= int(metrics['correct']) <= 8
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new_state.params)
    assert all(jax.tree.leaves(changed))
    assert not np.allclose(new_state.batch_stats['stem_bn']['mean'],
                           state.batch_stats['stem_bn']['mean'])
    again, _ = step(state, random_batch(), jax.random.key(1), 0.1)
    assert jax.tree.all(jax.tree.map(np.array_equal, again.params, new_state.params))


def test_dropout_key_depends_on_the_step():
    config = smoke_config()
    state = make_state(config)
    step = jax.jit(step_lib.train_step)
    a, _ = step(state, random_batch(), jax.random.key(1))
    b, _ = step(state.replace(step=5), random_batch(), jax.random.key(1))
    assert not np.allclose(a.params['classifier']['kernel'], b.params['classifier']['kernel'])


@pytest.mark.slow
def test_weight_average_follows_the_weights_and_is_what_gets_evaluated():
    config = smoke_config()
    step = jax.jit(step_lib.train_step, static_argnames='average')
    before = make_state(config, ema=True)
    after, _ = step(before, random_batch(), jax.random.key(1), 0.1,
                    average=averaging.Averaging(ema_decay=0.9))
    plain, _ = step(make_state(config), random_batch(), jax.random.key(1), 0.1)
    # The average rides along: the weights are those of the run without it.
    assert jax.tree.all(jax.tree.map(np.array_equal, plain.params, after.params))
    decay = 2 / 11  # held below (1 + step) / (10 + step) at step 1
    expected = jax.tree.map(lambda old, new: decay * old + (1 - decay) * new,
                            train_state.raw_variables(before), train_state.raw_variables(after))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 after.ema, expected)
    assert float(averaging.ema_decay_at(jnp.asarray(10_000), 0.9)) == pytest.approx(0.9)
    images = random_batch()['image']
    np.testing.assert_array_equal(views.predict_logits(after, images, ema=False),
                                  views.predict_logits(plain, images))
    assert not np.allclose(views.predict_logits(after, images),
                           views.predict_logits(after, images, ema=False))


def test_eval_step_masks_padding():
    state = make_state(smoke_config())
    split = types.Split(
        np.random.default_rng(0).integers(0, 255, (10, 32, 32, 3)).astype(np.uint8),
        np.arange(10, dtype=np.int32) % 10)
    mesh = data_parallel.create_mesh()
    # Padded to 12 rows: the two padding rows must not count either.
    test = host_data.host_split(mesh, split, rows_per_host=12)
    whole = evaluate.make_evaluate(mesh, batch_size=12)(state, test)
    ragged = evaluate.make_evaluate(mesh, batch_size=5)(state, test)
    assert whole['count'] == ragged['count'] == 10
    assert whole['correct'] == ragged['correct']
    assert whole['loss'] == pytest.approx(ragged['loss'], rel=1e-5)


@pytest.mark.parametrize('schedule', ['onecycle', 'warmup_cosine', 'constant', 'triangle'])
def test_schedules_peak_at_the_learning_rate(schedule):
    config = smoke_config(optim=dict(schedule=schedule, learning_rate=0.4))
    fn = optim.create_learning_rate_fn(config.optim, schedule_steps=100)
    values = np.array([fn(i) for i in range(101)])
    assert values.max() == pytest.approx(0.4, rel=1e-3)
    if schedule != 'constant':
        assert values[0] < 0.1 and values[-1] < 0.01


def test_triangle_schedule_rises_and_falls_linearly_as_airbench_does():
    fn = optim.create_learning_rate_fn(airnet.get_config().optim, schedule_steps=100)
    assert float(fn(0)) == pytest.approx(1.5 / 5)
    assert float(fn(23)) == pytest.approx(1.5)
    assert float(fn(100)) == pytest.approx(1.5 * 0.07, rel=1e-5)
    assert float(fn(10)) == pytest.approx(0.3 + 1.2 * 10 / 23, rel=1e-5)


def test_norm_biases_learn_faster_but_decay_as_before():
    params = {'a_bn': {'bias': jnp.ones(3), 'scale': jnp.ones(3)},
              'conv': {'bias': jnp.ones(3), 'kernel': jnp.ones((2, 3))}}
    grads = jax.tree.map(jnp.ones_like, params)
    config = smoke_config(optim=dict(lr_mults=(('.*_bn/bias', 64.0),), momentum=0.0,
                                     nesterov=False))
    tx = optim.create_optimizer(config, optax_constant(0.01))
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates['a_bn']['bias'], -0.64)
    np.testing.assert_allclose(updates['a_bn']['scale'], -0.01)
    np.testing.assert_allclose(updates['conv']['bias'], -0.01)
    np.testing.assert_allclose(updates['conv']['kernel'], -0.01 * (1 + config.optim.weight_decay))


def test_muon_orthogonalizes_dense_and_pointwise_kernels_and_leaves_the_rest_to_sgd():
    params = {'dense_conv': {'kernel': jnp.zeros((3, 3, 4, 8))},
              'sep': {'depthwise': {'kernel': jnp.zeros((3, 3, 1, 8))},
                      'pointwise': {'kernel': jnp.zeros((1, 1, 8, 16))}},
              'a_bn': {'bias': jnp.zeros(8)}, 'classifier': {'kernel': jnp.zeros((16, 10))}}
    # A strong common direction (+2) on noise: far from orthogonal.
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(p.size), p.shape) + 2.0,
                         params)
    config = smoke_config(optim=dict(momentum=0.0, nesterov=False, weight_decay=0.0,
                                     learning_rate=0.1, name='muon',
                                     muon=dict(learning_rate=0.2)))
    tx = optim.create_optimizer(config, optax_constant(0.1))
    updates, _ = tx.update(grads, tx.init(params), params)
    def spread(kernel):  # of the singular values of the O x HWI matrix (rows: filters)
        singular = np.linalg.svd(np.asarray(kernel).reshape(-1, kernel.shape[-1]).T,
                                 compute_uv=False)
        return singular.max() / singular.min()

    for update, grad in ((updates['dense_conv'], grads['dense_conv']),
                         (updates['sep']['pointwise'], grads['sep']['pointwise'])):
        # Newton-Schulz (5 steps) leaves singular values in about [0.7, 1.1]: near orthogonal.
        assert spread(update['kernel']) < 1.7 < 5 < spread(grad['kernel'])
    for path in (('sep', 'depthwise', 'kernel'), ('a_bn', 'bias'), ('classifier', 'kernel')):
        update, grad = updates, grads
        for key in path:
            update, grad = update[key], grad[key]
        np.testing.assert_allclose(update, -0.1 * grad, rtol=1e-6)  # plain SGD


def optax_constant(value):
    return lambda step: value


def lookahead_state(step):
    config = smoke_config()
    return make_state(config, ema=True).replace(step=jnp.asarray(step))


def test_lookahead_slow_copy_follows_before_the_start_then_pulls_the_weights_back():
    plan = averaging.Lookahead(every=5, decay=0.9, power=1.0, start_step=10,
                               reset_every=12, schedule_steps=100)
    shift = lambda tree, d: jax.tree.map(lambda x: x + d, tree)
    state = lookahead_state(7)
    state = state.replace(params=shift(state.params, 1.0))
    early = averaging.lookahead_sync(state, plan)  # before start_step: the copy is the weights
    assert same_tree(early.ema['params'], state.params)
    assert same_tree(early.params, state.params)
    moved = state.replace(step=jnp.asarray(20), ema={**state.ema, 'params': shift(
        state.params, -1.0)})
    synced = averaging.lookahead_sync(moved, plan)  # a sync step: rho = 0.9**5 * 20/100
    rho = 0.9 ** 5 * 0.2
    expected = shift(moved.params, -rho)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 synced.ema['params'], expected)
    assert same_tree(synced.params, synced.ema['params'])
    between = averaging.lookahead_sync(moved.replace(step=jnp.asarray(21)), plan)
    assert same_tree(between.params, moved.params)  # neither a sync nor an epoch's end
    assert same_tree(between.ema, moved.ema)
    epoch_end = averaging.lookahead_sync(moved.replace(step=jnp.asarray(24)), plan)
    assert same_tree(epoch_end.params, moved.ema['params'])  # rho = 1: back to the copy


def same_tree(a, b):
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


def test_alternating_flip_mirrors_every_image_in_odd_epochs(monkeypatch):
    config = smoke_config(augment=dict(alternating_flip=True, crop_padding=0),
                          train=dict(batch_size=4))
    # The step as the run calls it, its optimizer step replaced by one that hands back the
    # batch it was given.
    monkeypatch.setattr(step_lib, 'train_step', lambda state, batch, *_: (
        state, {'image': batch['image']}))
    mesh = data_parallel.create_mesh()
    train_fn = step_lib.make_train_fn(config, mesh, steps_per_epoch=3, schedule_steps=9)
    images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)).astype(np.uint8)
    on_hosts = [data_parallel.by_host(mesh, a) for a in (images, np.zeros(4, np.int32))]
    order = data_parallel.by_host(mesh, np.arange(4, dtype=np.int32)[None])
    seen = [train_fn(lookahead_state(at), *on_hosts, order, 0)[1]['image']
            for at in (0, 2, 3, 5, 6)]
    plain = types.normalize(jnp.asarray(images))
    for batch, flipped in zip(seen, (False, False, True, True, False)):
        np.testing.assert_allclose(batch, plain[:, :, ::-1] if flipped else plain, atol=1e-5)


def test_mirror_half_is_a_function_of_the_row_whatever_the_hosts():
    images = np.random.default_rng(0).integers(0, 255, (100, 4, 4, 3)).astype(np.uint8)
    rng = jax.random.key(3)
    whole = augment.mirror_half(rng, images, 0, 100)
    halves = np.concatenate([augment.mirror_half(rng, images[:50], 0, 100),
                             augment.mirror_half(rng, images[50:], 50, 100)])
    np.testing.assert_array_equal(whole, halves)
    mirrored = [not np.array_equal(a, b) for a, b in zip(whole, images)]
    assert 30 < sum(mirrored) < 70
    for a, b, m in zip(whole, images, mirrored):
        np.testing.assert_array_equal(a, b[:, ::-1] if m else b)


@pytest.fixture(scope='module')
def learnable_folder(tmp_path_factory):
    return rgb_folder(tmp_path_factory.mktemp('data'), train_per_class=32)


def read_metrics(workdir):
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_learns_a_small_dataset_and_prints_the_seed_lines(learnable_folder, tmp_path, capsys):
    config = smoke_config(dataset=learnable_folder, train=dict(epochs=6))
    train.train_and_evaluate(config, str(tmp_path))
    metrics = read_metrics(tmp_path)
    assert [m['epoch'] for m in metrics] == list(range(6))
    assert metrics[-1]['train_loss'] < metrics[0]['train_loss']
    assert metrics[-1]['test_accuracy'] >= 0.8  # chance is 1/3
    out = capsys.readouterr()
    assert 'Total params:' in out.out and 'EPOCH: 5' in out.out
    assert 'Test set: Average loss: ' in out.out and '/30 (' in out.out
    assert 'Loss=' in out.err and 'Batch_id=11' in out.err and 'Accuracy=' in out.err
    # How far and how long: the epoch out of how many, the remaining time, images/s.
    assert 'EPOCH: 0 (1 of 6)' in out.out and re.search(r'EPOCH: 5 \(6 of 6; about \d', out.out)
    assert re.search(r'Loss=\d+\.\d{4} Batch_id=', out.err) and ' img/s' in out.err
    assert 'Compiling the train step' in out.out
    # One summary at the end: best and final accuracy with their epochs, time, the files.
    best = max(metrics, key=lambda m: m['test_accuracy'])
    assert (f"Best test accuracy {100 * best['test_accuracy']:.2f}% after epoch "
            f"{best['epoch']}; final {100 * metrics[-1]['test_accuracy']:.2f}% after epoch 5"
            in out.out)
    assert re.search(rf'Workdir {tmp_path}: checkpoints/, config.json, curves.png, '
                     r'metrics.jsonl, tensorboard/', out.out)
    # The resolved config, and in TensorBoard the hyperparameters and images/s.
    assert json.loads((tmp_path / 'config.json').read_text()) == json.loads(
        json.dumps(config.to_dict(), default=str))
    tags, plugins = set(), set()
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    for events in glob.glob(str(tmp_path / 'tensorboard' / '**' / 'events*'), recursive=True):
        for event in EventFileLoader(events).Load():
            for value in event.summary.value:
                tags.add(value.tag)
                plugins.add(value.metadata.plugin_data.plugin_name)
    assert {'train/images_per_second', 'train/loss', 'epoch/test_accuracy'} <= tags, tags
    assert 'hparams' in plugins, plugins


# (The smoke config as it is resumes bit-identical after kills at chosen points:
# tests/test_robustness.py. Here, resumed from chosen steps, two recipes that carry more state.)
@pytest.mark.parametrize('options', [
    # Their random and running state resumes too; calls of 4 steps (one program) mix with single
    # steps around checkpoints and epoch ends; a frozen whitened first conv restores as saved.
    dict(augment=dict(cutout_size=8), average=dict(ema_decay=0.9),
         train=dict(steps_per_dispatch=4, log_every_steps=4), whitening=dict(layer='stem_conv')),
    # airnet's recipe: Lookahead's slow copy, alternating flips, reflected crops.
    dict(model='airnet', model_args=dict(
        block_features=(8, 16), block_depths=(2, 2), block_dilations=(2, 1)),
        whitening=dict(layer='whiten_conv'),
        average=dict(lookahead=dict(every=2, decay=0.9, power=1.0, start_epoch=1)),
        augment=dict(alternating_flip=True, crop_padding=2, crop_pad_mode='reflect'),
        optim=dict(lr_mults=(('.*_bn/bias', 8.0),), schedule='triangle')),
], ids=['cutout-ema-4-steps-per-call-whitened', 'airnet-lookahead-alternating'])
@pytest.mark.slow
def test_resume_equals_the_uninterrupted_run(learnable_folder, tmp_path, options):
    # 96 images / batch 8 = 12 steps an epoch; 3 epochs; checkpoints every 5 steps and at
    # epoch ends. A copy of the run that keeps only the checkpoints up to step 15 (mid epoch
    # 1), or 12 (epoch 0's end), is run again: the same state, the same metrics (time aside).
    options = dict(options)
    config = smoke_config(dataset=learnable_folder, train=dict(epochs=3),
                          checkpoint=dict(every_steps=5, max_to_keep=20))
    if 'model_args' in options:  # replaced whole: update() would merge them
        config.model_args = ml_collections.ConfigDict(options.pop('model_args'))
    config.update(options)
    whole = train.train_and_evaluate(config, str(tmp_path / 'whole'))
    without_time = lambda path: [{k: v for k, v in record.items() if k != 'epoch_time_s'}
                                 for record in read_metrics(path)]
    for resume_step in (15, 12):
        cut = tmp_path / f'cut{resume_step}'
        shutil.copytree(tmp_path / 'whole', cut)
        steps = sorted(int(d) for d in os.listdir(cut / 'checkpoints') if d.isdigit())
        assert resume_step in steps and steps[-1] == 36
        for step in steps:
            if step > resume_step:
                shutil.rmtree(cut / 'checkpoints' / str(step))
        resumed = train.train_and_evaluate(config, str(cut))
        assert int(resumed.step) == int(whole.step) == 36
        same = jax.tree.map(np.array_equal,
                            (whole.params, whole.batch_stats, whole.opt_state,
                             train_state.average_of(whole)),
                            (resumed.params, resumed.batch_stats, resumed.opt_state,
                             train_state.average_of(resumed)))
        assert all(jax.tree.leaves(same)), resume_step
        assert without_time(cut) == without_time(tmp_path / 'whole'), resume_step


def test_epoch_sums_resume_with_the_seconds_already_spent():
    sums = progress.EpochSums()
    sums.add([{'loss': np.float32(2.0), 'correct': 3, 'count': 4}], first_step=1)
    saved = {**sums.as_dict(), 'seconds': 100.0}  # as a checkpoint keeps them
    resumed = progress.EpochSums(saved)
    assert (resumed.loss, resumed.correct, resumed.count) == (8.0, 3, 4)
    assert 100.0 <= resumed.seconds() < 110.0
    older = compat.upgrade_meta({'epoch_sums': {'loss': 8.0, 'correct': 3, 'count': 4}})
    assert progress.EpochSums(older['epoch_sums']).seconds() < 10.0


@pytest.mark.slow
def test_finished_run_is_not_retrained(learnable_folder, tmp_path, capsys):
    config = smoke_config(dataset=learnable_folder, train=dict(steps=4))
    first = train.train_and_evaluate(config, str(tmp_path))
    second = train.train_and_evaluate(config, str(tmp_path))
    assert int(second.step) == 4
    assert jax.tree.all(jax.tree.map(np.array_equal, first.params, second.params))
    assert 'Nothing to do' in capsys.readouterr().out


@contextlib.contextmanager
def compiled_functions():
    """The names of the functions XLA compiles meanwhile (a persistent-cache hit counts too),
    from JAX's public monitoring events."""
    names = []

    def listener(event, duration, **kwargs):
        if event == '/jax/core/compile/backend_compile_duration':
            names.append(kwargs.get('fun_name', ''))
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.slow
def test_train_and_eval_steps_compile_once_for_a_whole_run(learnable_folder, tmp_path):
    config = smoke_config(dataset=learnable_folder, train=dict(epochs=3))
    with compiled_functions() as compiled:
        train.train_and_evaluate(config, str(tmp_path))
    # 36 train steps and 3 evaluations of 5 batches each, one compilation of each step.
    assert compiled.count('jit(train_steps_1)') == 1, compiled
    assert compiled.count('jit(eval_fn)') == 1, compiled


@pytest.mark.slow
def test_several_steps_per_dispatch_train_as_one_and_compile_once(learnable_folder, tmp_path):
    # 12 steps an epoch, 2 epochs, checkpoints every 5 steps: calls of 4 steps where they fit.
    runs = {}
    for steps_per_dispatch in (1, 4):
        with compiled_functions() as compiled:
            runs[steps_per_dispatch] = train.train_and_evaluate(
                smoke_config(dataset=learnable_folder,
                             train=dict(steps_per_dispatch=steps_per_dispatch, log_every_steps=4),
                             checkpoint=dict(every_steps=5)),
                str(tmp_path / str(steps_per_dispatch)))
    # The run with 4 per dispatch: one program of 4 steps, one of 1 (around checkpoints).
    assert compiled.count('jit(train_steps_4)') == 1, compiled
    assert compiled.count('jit(train_steps_1)') == 1, compiled
    assert int(runs[4].step) == int(runs[1].step) == 24
    # The bigger program fuses and sums in another order, and 24 steps carry the rounding on
    # (through max pooling's near-ties, among others): the parameters agreed to 4.6e-4 of
    # their scale; the same batches in another order within a call moved them by 0.047.
    scale = max(float(jnp.max(jnp.abs(p))) for p in jax.tree.leaves(runs[1].params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-3 * scale),
                 runs[4].params, runs[1].params)
    metrics = [read_metrics(tmp_path / str(steps)) for steps in (1, 4)]
    for one, four in zip(*metrics):
        assert four['train_loss'] == pytest.approx(one['train_loss'], rel=1e-4)


def test_sharded_epoch_order_restricts_one_permutation_to_each_shard():
    whole = host_data.epoch_order(seed=3, epoch=1, num_examples=103)
    np.testing.assert_array_equal(np.sort(whole[0]), np.arange(103))  # one shard: all rows
    shards = host_data.epoch_order(seed=3, epoch=1, num_examples=103, shards=4)  # 25 each, 3 out
    assert shards.shape == (4, 25)
    for s, order in enumerate(shards):
        np.testing.assert_array_equal(np.sort(order), np.arange(25))
        # The shard's rows in the order the one-shard permutation visits them.
        in_shard = whole[0][(whole[0] >= 25 * s) & (whole[0] < 25 * (s + 1))] - 25 * s
        np.testing.assert_array_equal(order, in_shard)
    assert not np.array_equal(shards, host_data.epoch_order(seed=3, epoch=2, num_examples=103,
                                                        shards=4))


def test_test_time_flip_averages_an_image_and_its_mirror():
    state = make_state(smoke_config())
    images = random_batch()['image']
    mirrored = images[:, :, ::-1]
    with_flip = views.predict_logits(state, images, flip=True)
    np.testing.assert_allclose(with_flip, views.predict_logits(state, mirrored, flip=True),
                               rtol=1e-5, atol=1e-6)  # the mirror gives the same average
    plain, of_mirror = (views.predict_logits(state, x) for x in (images, mirrored))
    np.testing.assert_allclose(with_flip, (plain + of_mirror) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain, of_mirror)


def test_test_time_shifts_add_two_translated_views_at_half_the_weight():
    state = make_state(smoke_config())
    images = random_batch()['image']
    padded = jnp.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode='reflect')
    shifted = [images, padded[:, :32, :32], padded[:, 4:, 4:]]
    flipped = [views.predict_logits(state, x, flip=True) for x in shifted]
    np.testing.assert_allclose(views.predict_logits(state, images, flip=True, translate=2),
                               flipped[0] / 2 + (flipped[1] + flipped[2]) / 4,
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(flipped[1], flipped[0])


def library_fusion_roots(hlo_text: str) -> collections.Counter:
    """The root operation of each of a compiled CPU program's YNNPACK fusions, counted."""
    roots = collections.Counter()
    for line in hlo_text.splitlines():
        if '"kind":"__ynn_fusion"' in line:
            called = re.search(r'calls=%?([\w.]+)', line).group(1)
            body = re.search(re.escape(called) + r' [^\n]*\{\n(.*?)\n\}', hlo_text, re.S).group(1)
            roots[re.search(r'ROOT [^=]*= (?:\([^)]*\)|\S+) ([\w-]+)\(', body).group(1)] += 1
    return roots


@pytest.mark.slow
def test_cpu_convolutions_leave_ynnpack_and_train_the_same():
    """cpu_ynnpack_convolutions=False (the default) reaches the compiled training step: its
    convolutions leave YNNPACK's fusions (XLA's CPU default hands them over) while its
    reductions stay, and the step computes what it computed before, up to float rounding."""
    mesh = data_parallel.create_mesh()
    rng = np.random.default_rng(0)
    images = data_parallel.by_host(mesh, rng.integers(0, 256, (16, 32, 32, 3), np.uint8))
    labels = data_parallel.by_host(mesh, rng.integers(0, 10, 16).astype(np.int32))
    order = data_parallel.by_host(mesh, host_data.epoch_order(0, 0, 16))
    updates, losses, roots = {}, {}, {}
    assert seednet.get_config().train.cpu_ynnpack_convolutions is False
    for ynnpack in (True, False):
        config = seednet.get_config()
        config.train.update(batch_size=16, cpu_ynnpack_convolutions=ynnpack)
        state = make_state(config)
        compiled = step_lib.make_train_fn(config, mesh, 1, 1).lower(
            state, images, labels, order, 0).compile()
        roots[ynnpack] = library_fusion_roots(compiled.as_text())
        # The program donates the state it is given: a copy keeps `state` for the update.
        new_state, metrics = compiled(jax.tree.map(jnp.copy, state), images, labels, order, 0)
        updates[ynnpack] = jax.tree.map(jnp.subtract, new_state.params, state.params)
        losses[ynnpack] = float(metrics['loss'])
    assert roots[True]['convolution'] > 0 and roots[False]['convolution'] == 0
    assert roots[False]['reduce'] == roots[True]['reduce'] > 0
    assert roots[False]['dot'] == roots[True]['dot']
    assert losses[False] == pytest.approx(losses[True], rel=1e-6)
    # Each parameter's update agrees to 1e-3 of its largest entry (seen: 1.8e-4 at worst).
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-3 * np.abs(b).max()),
                 updates[False], updates[True])


def test_refused_xla_options_are_named():
    assert xla_options.rejected({}) is None
    assert xla_options.rejected(xla_options.training_options(seednet.get_config().train)) is None
    assert 'xla_cpu_no_such_option' in xla_options.rejected({'xla_cpu_no_such_option': True})


def test_1_2_or_64_processes_train_on_the_same_global_batches():
    """With config.data.shards fixed, the rows of every global batch (in batch order) are
    the same whatever the number of processes, each taking rows of its own shards only."""
    shards, shard_length, per_shard = 64, 50, 2  # 3,200 rows, global batch 128
    orders = host_data.epoch_order(seed=5, epoch=2, num_examples=shards * shard_length + 7,
                                   shards=shards)
    batches = {}
    for hosts in (1, 2, 64):
        per_host = shards // hosts * shard_length  # rows each process holds
        for index in range(3):
            local = np.asarray(data_parallel.shard_batch_ids(jnp.asarray(orders), index,
                                                             per_shard, hosts))
            assert local.min() >= 0 and local.max() < per_host  # its own rows only
            rows = (local + np.arange(hosts)[:, None] * per_host).reshape(-1)
            batches.setdefault(index, []).append(rows)
    for one, *others in batches.values():
        assert len(set(one)) == shards * per_shard
        for rows in others:
            np.testing.assert_array_equal(rows, one)
