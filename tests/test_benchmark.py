"""The throughput benchmark runs any config and reports every measurement (values, not speed)."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, rgb_arrays


def run_throughput(folder, *overrides, devices=1) -> dict:
    output = subprocess.run(
        [sys.executable, os.path.join(REPO, 'benchmarks', 'throughput.py'), '--config',
         os.path.join(REPO, 'configs', 'smoke.py'), f'--config.data.dataset={folder}',
         '--steps=2', '--repeats=1', '--epoch_steps=2', '--depthwise_implementation=conv',
         '--json', *overrides],
        capture_output=True, text=True, env={
            **os.environ, 'JAX_PLATFORMS': 'cpu',
            'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'})
    assert output.returncode == 0, output.stderr[-3000:]
    return json.loads(output.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_throughput_benchmark_reports_every_measurement_as_json(tmp_path):
    folder = rgb_arrays(tmp_path / 'data', train_per_class=8, test_per_class=3)
    result = run_throughput(folder)
    for key in ('train_images_per_s', 'epoch_images_per_s', 'eval_images_per_s', 'compile_s',
                'startup_s', 'flops_per_image', 'gflops_per_s'):
        assert result[key] > 0, key
    assert result['startup_s'] > result['compile_s']
    assert result['epoch_steps'] == 2 and result['batch_size'] == 8
    assert result['backend'] == 'cpu' and result['model'] == 'dsresnet'
    assert result['depthwise_implementation'] == 'conv'
    # Over two devices each device's program computes half the batch: the same per image.
    split = run_throughput(folder, devices=2)
    assert split['devices'] == 2
    assert abs(split['flops_per_image'] / result['flops_per_image'] - 1) < 0.1


@pytest.mark.slow
def test_step_profile_attributes_the_step_to_layers_and_passes():
    output = subprocess.run(
        [sys.executable, os.path.join(REPO, 'benchmarks', 'step_profile.py'), '--config',
         os.path.join(REPO, 'configs', 'smoke.py'), '--config.train.batch_size=64', '--steps=2',
         '--top=3'],
        capture_output=True, text=True, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
    assert output.returncode == 0, output.stderr[-3000:]
    lines = output.stdout.splitlines()
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines
            if line.startswith('stage1_sepconv/depthwise ')}
    assert rows['stage1_sepconv/depthwise'][0] > 0, lines  # a layer's forward is found
    totals = next(line for line in lines if line.startswith('sum forward'))
    forward, backward = (float(v) for v in re.findall(r'(?:forward|backward) ([\d.]+) ms', totals))
    assert forward > 0 and backward > 0, totals  # and the backward pass told apart
    # --top=3: the table of most expensive operations has three rows under its header.
    header = next(line for line in lines if 'most expensive' in line)
    assert len(lines) - lines.index(header) == 1 + 3
