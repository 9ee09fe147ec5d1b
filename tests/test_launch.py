"""launch.sh --dry-run prints the gcloud commands of Google's TPU VM workflow."""
import os
import shlex
import subprocess

from conftest import REPO


def dry_run(*args):
    result = subprocess.run(['bash', os.path.join(REPO, 'launch.sh'), '--dry-run', *args],
                            capture_output=True, text=True)
    return result.returncode, result.stdout.strip().splitlines(), result.stderr


def gcloud(line: str) -> tuple[list[str], dict]:
    """A printed gcloud call as (its words before the flags, {flag: value or True}), so that
    tests check what is asked for, not how the line is spelled."""
    words, flags = [], {}
    for token in shlex.split(line):
        if token.startswith('--'):
            name, _, value = token.partition('=')
            flags[name] = value or True
        elif not flags:
            words.append(token)
    return words, flags


def test_up_on_a_pod_slice_prints_create_copy_install_train_logs():
    rc, lines, _ = dry_run('--zone', 'us-central2-b', '--tpu-type', 'v4-32', '--name', 'exp1',
                           '--workdir', 'gs://bucket/exp1', 'up', '--', '--config.train.epochs=30')
    assert rc == 0
    words, flags = gcloud(lines[0])
    assert words == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'exp1']
    assert flags == {'--zone': 'us-central2-b', '--accelerator-type': 'v4-32',
                     '--version': 'tpu-ubuntu2204-base'}
    assert lines[1].startswith('tar -C ')
    assert lines[2].startswith('gcloud compute tpus tpu-vm scp ')
    assert '--worker=all' in lines[2]
    workers = [line for line in lines if 'tpu-vm ssh exp1' in line]
    assert all('--zone=us-central2-b' in line for line in workers)
    install, train, logs = workers[1:]
    assert '--worker=all' in install
    # A Python of uv's, not the image's python3 (3.10 on every TPU image, too old for jax).
    assert 'uv venv' in install and '--python 3.12' in install
    # TFDS: the TPU config downloads CIFAR-10; gcs: the gs:// workdir.
    assert "'.[tfds,gcs]'" in install and "'jax[tpu]'" in install
    assert '--worker=all' in train
    assert ('main.py --config configs/tpu.py --workdir gs://bucket/exp1 --config.train.epochs=30'
            in train)
    assert '--worker=0' in logs and 'tail' in logs
    assert not any('delete' in line for line in lines)


def test_queued_spot_create_and_delete():
    rc, lines, _ = dry_run('--zone', 'europe-west4-b', '--tpu-type', 'v5litepod-16',
                           '--version', 'v2-alpha-tpuv5-lite', '--project', 'proj',
                           '--queued', '--spot', 'create')
    assert rc == 0 and len(lines) == 1
    words, flags = gcloud(lines[0])
    assert words == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create', 'flax-cifar']
    assert flags == {'--node-id': 'flax-cifar', '--zone': 'europe-west4-b', '--project': 'proj',
                     '--accelerator-type': 'v5litepod-16',
                     '--runtime-version': 'v2-alpha-tpuv5-lite', '--spot': True}
    rc, lines, _ = dry_run('--zone', 'europe-west4-b', '--queued', 'delete')
    words, flags = gcloud(lines[0])
    assert words == ['gcloud', 'compute', 'tpus', 'queued-resources', 'delete', 'flax-cifar']
    assert flags == {'--zone': 'europe-west4-b', '--force': True, '--quiet': True}


def test_clone_instead_of_copy():
    rc, lines, _ = dry_run('--zone', 'z', '--repo', 'https://example.org/flax_cifar.git', 'copy')
    assert rc == 0 and len(lines) == 1
    assert 'git clone --depth 1 https://example.org/flax_cifar.git ~/flax_cifar' in lines[0]


def test_bad_invocations_are_refused_with_a_reason():
    rc, _, err = dry_run('create')
    assert rc == 2 and '--zone is required' in err
    rc, _, err = dry_run('--zone', 'z', 'train')
    assert rc == 2 and 'gs://' in err
    rc, _, err = dry_run('--zone', 'z', '--bogus', 'up')
    assert rc == 2 and "unknown argument '--bogus'" in err


def test_help_documents_every_command():
    result = subprocess.run(['bash', os.path.join(REPO, 'launch.sh'), '--help'],
                            capture_output=True, text=True)
    assert result.returncode == 0
    for word in ('create', 'copy', 'install', 'train', 'logs', 'delete', 'up', '--dry-run',
                 '--spot', '--queued'):
        assert word in result.stdout


def test_the_software_version_follows_the_tpu_type_unless_given():
    for tpu_type, version in (('v4-8', 'tpu-ubuntu2204-base'), ('v3-8', 'tpu-ubuntu2204-base'),
                              ('v5litepod-16', 'v2-alpha-tpuv5-lite'),
                              ('v5p-8', 'v2-alpha-tpuv5'), ('v6e-8', 'v2-alpha-tpuv6e')):
        _, lines, _ = dry_run('--zone', 'z', '--tpu-type', tpu_type, 'create')
        assert gcloud(lines[0])[1]['--version'] == version, tpu_type
    _, lines, _ = dry_run('--zone', 'z', '--tpu-type', 'v6e-8', '--version', 'custom', 'create')
    assert gcloud(lines[0])[1]['--version'] == 'custom'


def test_a_python_older_than_the_floor_is_refused():
    rc, _, err = dry_run('--zone', 'z', '--python', '3.10', 'install')
    assert rc == 2 and 'Python 3.11 or newer' in err
    rc, lines, _ = dry_run('--zone', 'z', '--python', '3.13', '--jax', 'jax[tpu]==0.10.2',
                           'install')
    assert rc == 0 and '--python 3.13' in lines[0] and "'jax[tpu]==0.10.2'" in lines[0]
