"""A stand-in `gcloud` for tests/test_pod.py: a TPU VM of N workers on this machine.

Each worker is a home directory under $STAND_IN_GCLOUD_ROOT/<name>/worker<i>; `ssh` runs the
command with bash in every chosen worker at once, `scp` copies into each home. The workers
share one coordinator address on localhost and see the process layout a TPU slice would
give JAX (flax_cifar.parallel.distributed reads it); their `python3` is $STAND_IN_PYTHON3
(a Python 3.10, as on every TPU image). Every call is appended to calls.jsonl. What
launch.sh runs is executed unchanged; only the machine is not a TPU.
"""
import json
import os
import shutil
import socket
import subprocess
import sys

ROOT = os.environ['STAND_IN_GCLOUD_ROOT']


def flags_and_words(argv):
    words, flags = [], {}
    for token in argv:
        if token.startswith('--'):
            name, _, value = token[2:].partition('=')
            flags[name] = value or True
        else:
            words.append(token)
    return words, flags


def node_file(name):
    return os.path.join(ROOT, name, 'node.json')


def create(name, flags):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    workers = int(os.environ.get('STAND_IN_WORKERS', '2'))
    node = {'name': name, 'workers': workers, 'port': port, 'state': 'ACTIVE', **flags}
    for i in range(workers):
        bin_dir = os.path.join(ROOT, name, f'worker{i}', '.stand-in-bin')
        os.makedirs(bin_dir, exist_ok=True)
        with open(os.path.join(bin_dir, 'python3'), 'w') as f:
            f.write(f'#!/bin/sh\nexec {os.environ["STAND_IN_PYTHON3"]} "$@"\n')
        os.chmod(os.path.join(bin_dir, 'python3'), 0o755)
    with open(node_file(name), 'w') as f:
        json.dump(node, f)


def load(name):
    with open(node_file(name)) as f:
        return json.load(f)


def worker_home(name, i):
    return os.path.join(ROOT, name, f'worker{i}')


def worker_env(node, i):
    home = worker_home(node['name'], i)
    # This process's virtual environment is not the worker's: drop it from PATH.
    path = [os.path.join(home, '.stand-in-bin')] + [
        p for p in os.environ['PATH'].split(os.pathsep)
        if not p.startswith(sys.prefix) and p != os.path.dirname(sys.executable)]
    # Nor are its PYTHONPATH or PYTHONDONTWRITEBYTECODE (a TPU VM writes bytecode, so each
    # launch after the first imports its packages compiled).
    env = {k: v for k, v in os.environ.items()
           if k not in ('VIRTUAL_ENV', 'PYTHONPATH', 'PYTHONDONTWRITEBYTECODE')}
    env.update({
        'HOME': home, 'PATH': os.pathsep.join(path), 'JAX_PLATFORMS': 'cpu',
        'TPU_WORKER_HOSTNAMES': ','.join(['localhost'] * node['workers']),
        'TPU_WORKER_ID': str(i),
        'JAX_COORDINATOR_ADDRESS': f'localhost:{node["port"]}',
        'JAX_NUM_PROCESSES': str(node['workers']), 'JAX_PROCESS_ID': str(i)})
    return env


def chosen_workers(node, flags):
    which = flags.get('worker', '0')
    return list(range(node['workers'])) if which == 'all' else [int(which)]


def ssh(name, flags):
    node = load(name)
    processes = [subprocess.Popen(['bash', '-c', flags['command']], cwd=worker_home(name, i),
                                  env=worker_env(node, i))
                 for i in chosen_workers(node, flags)]
    return max(p.wait() for p in processes)


def scp(source, target, flags):
    name, _, path = target.partition(':')
    node = load(name)
    for i in chosen_workers(node, flags):
        home = worker_home(name, i)
        shutil.copy(source, path.replace('~', home, 1) if path.startswith('~') else
                    os.path.join(home, path))
    return 0


def main(argv):
    with open(os.path.join(ROOT, 'calls.jsonl'), 'a') as f:
        f.write(json.dumps(argv) + '\n')
    words, flags = flags_and_words(argv)
    if words[:3] != ['compute', 'tpus', 'tpu-vm'] and words[:3] != ['compute', 'tpus',
                                                                     'queued-resources']:
        sys.exit(f'stand-in gcloud: {" ".join(argv)} is not a TPU command')
    kind, verb, rest = words[2], words[3], words[4:]
    if verb == 'create':
        create(flags.get('node-id', rest[0]), flags)
        return 0
    if verb == 'describe':
        print(load(rest[0])['state'])
        return 0
    if verb == 'delete':
        shutil.rmtree(os.path.join(ROOT, rest[0]), ignore_errors=True)
        return 0
    if kind == 'tpu-vm' and verb == 'ssh':
        return ssh(rest[0], flags)
    if kind == 'tpu-vm' and verb == 'scp':
        return scp(rest[0], rest[1], flags)
    sys.exit(f'stand-in gcloud: {verb} is not supported')


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
