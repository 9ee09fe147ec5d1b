"""Data parallelism over devices and hosts, and bfloat16, all on CPU."""
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import smoke
from conftest import REPO, rgb_arrays, smoke_config
from flax_cifar.evaluation import inference
from flax_cifar.state import optim, train_state
from flax_cifar.training import step as step_lib
from flax_cifar.training import train


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return rgb_arrays(tmp_path_factory.mktemp('data'), train_per_class=16, test_per_class=4)


STEPS_PER_EPOCH = 6  # 48 training images, global batch 8


def run_main(data, workdir, devices=1, extra=(), wait=True):
    """main.py with the smoke config, 6 steps of global batch 8, on `devices` CPU devices."""
    env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
           'JAX_PLATFORMS': 'cpu'}
    command = [sys.executable, os.path.join(REPO, 'main.py'), '--config',
               os.path.join(REPO, 'configs', 'smoke.py'), f'--config.data.dataset={data}',
               '--config.train.epochs=1', f'--workdir={workdir}', *extra]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if wait:
        output = process.communicate()[0].decode()
        assert process.returncode == 0, output[-3000:]
        return output
    return process


def close(a, b):
    return all(jax.tree.leaves(jax.tree.map(
        lambda x, y: np.allclose(x, y, rtol=1e-4, atol=1e-5), a, b)))


def in_this_process(data, workdir, overrides=None):
    """run_main's run on this process's one CPU device (the same computation, no start-up);
    `overrides`: {dotted field: value}, as the command line's."""
    assert jax.device_count() == 1
    config = smoke_config(data, train=dict(epochs=1))
    config.update_from_flattened_dict(overrides or {})
    train.train_and_evaluate(config, str(workdir))
    return inference.restore_for_inference(str(workdir), 'latest')[0]


@pytest.fixture(scope='module')
def one_device(data, tmp_path_factory):
    return in_this_process(data, tmp_path_factory.mktemp('one_device'))


@pytest.mark.slow
def test_eight_devices_match_one_device_on_the_same_global_batch(data, one_device, tmp_path):
    output = run_main(data, tmp_path, devices=8)
    sharded = inference.restore_for_inference(str(tmp_path), 'latest')[0]
    assert int(sharded.step) == int(one_device.step) == STEPS_PER_EPOCH
    assert close((one_device.params, one_device.batch_stats),
                 (sharded.params, sharded.batch_stats))
    assert 'Test set' in output
    assert 'Devices: 8 cpu in 1 process(es), each taking 1 of the 8 images of a batch' in output


def two_processes(data, workdir, *extra):
    with socket.socket() as s:
        s.bind(('localhost', 0))
        port = s.getsockname()[1]
    return [run_main(data, workdir, extra=(
        f'--config.distributed.coordinator_address=localhost:{port}',
        '--config.distributed.num_processes=2', f'--config.distributed.process_id={i}',
        *extra), wait=False) for i in range(2)]


def finished(processes) -> list[str]:
    outputs = [p.communicate(timeout=300)[0].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [o[-1500:] for o in outputs]
    return outputs


# (A SIGTERM to one of two processes: tests/test_pod.py, over the same gloo collectives.)
TWO_PROCESS_EPOCHS = 6
TWO_PROCESS_STEPS = TWO_PROCESS_EPOCHS * STEPS_PER_EPOCH
TWO_PROCESS_CONFIG = {'train.epochs': TWO_PROCESS_EPOCHS, 'checkpoint.every_steps': -1,
                      'train.log_every_steps': 2}
TWO_PROCESS_RUN = [f'--config.{key}={value}' for key, value in TWO_PROCESS_CONFIG.items()]


@pytest.fixture(scope='module')
def two_process_run(data, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('two')
    return workdir, finished(two_processes(data, workdir, *TWO_PROCESS_RUN))


@pytest.mark.slow
def test_two_processes_load_their_own_shards_match_one_and_restore_in_one(
        data, two_process_run, tmp_path):
    # Two data shards (0: one per process) give the same global batches on 1 process or 2.
    one_process = in_this_process(data, tmp_path / 'one', {'data.shards': 2, **TWO_PROCESS_CONFIG})
    workdir, outputs = two_process_run
    assert 'Test set' in outputs[0] and 'Test set' not in outputs[1]  # only process 0 prints
    # 48 training and 12 test images: each process reads only its half.
    assert 'Process 0 of 2 holds training rows 0:24 and test rows 0:6' in outputs[0]
    assert 'Process 1 of 2 holds training rows 24:48 and test rows 6:12' in outputs[1]
    # Restored here, in this single process, from what the two processes wrote together.
    together = inference.restore_for_inference(str(workdir), 'latest')[0]
    assert int(together.step) == TWO_PROCESS_STEPS
    assert close((one_process.params, one_process.batch_stats),
                 (together.params, together.batch_stats))


@pytest.mark.slow
def test_half_precision_computes_in_bfloat16_and_keeps_float32_parameters():
    config = smoke.get_config()
    config.half_precision = True
    model = train_state.model_of(config)
    tx = optim.create_optimizer(config, optim.create_learning_rate_fn(config.optim, 10))
    state = train_state.create_train_state(jax.random.key(0), model, tx)
    rng = np.random.default_rng(0)
    batch = {'image': jnp.asarray(rng.normal(size=(8, 32, 32, 3)), jnp.float32),
             'label': jnp.asarray(rng.integers(0, 10, 8), jnp.int32)}
    _, activations = model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                                 batch['image'], capture_intermediates=True,
                                 mutable=['intermediates'])
    assert activations['intermediates']['stem_conv']['__call__'][0].dtype == jnp.bfloat16
    step = jax.jit(step_lib.train_step)
    for _ in range(3):
        state, metrics = step(state, batch, jax.random.key(1))
        assert np.isfinite(float(metrics['loss']))
    dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state, state.batch_stats))
              if hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype('float32')}
