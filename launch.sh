#!/usr/bin/env bash
# Cloud TPU workflow for flax_cifar: create a TPU VM (or a queued resource, optionally spot),
# put the code on every worker, install, train on all workers, stream the log, delete.
# The gcloud commands follow Google's "Run JAX code on TPU slices" guide.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./launch.sh [flags] COMMAND [-- main.py flags]

Commands:
  create    create the TPU VM (with --queued: a queued resource, waiting until it is ACTIVE)
  copy      copy this checkout to ~/flax_cifar on every worker (with --repo: git clone it)
  install   make ~/flax_cifar/.venv on every worker: uv, a Python of --python (not the
            image's python3, 3.10 on every TPU image), flax_cifar and --jax
  train     start main.py on every worker in the background (log: ~/flax_cifar/train.log)
  logs      stream worker 0's log (process 0 is the one that prints) until its run ends
  delete    delete the TPU VM (and its queued resource)
  up        create, copy, install, train, logs

Flags:
  --name NAME         TPU name (default: flax-cifar)
  --zone ZONE         zone, e.g. us-central2-b (required)
  --tpu-type TYPE     accelerator type, e.g. v4-8, v4-32, v5litepod-16, v6e-8 (default: v4-8)
  --version VERSION   TPU software version (default: the one for --tpu-type:
                      tpu-ubuntu2204-base up to v4, v2-alpha-tpuv5-lite for v5e,
                      v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e for v6e)
  --python VERSION    the workers' Python, installed by uv (default: 3.12; at least 3.11)
  --jax SPEC          the JAX requirement installed on the workers (default: jax[tpu])
  --project PROJECT   Google Cloud project (default: gcloud's configured one)
  --spot              spot (preemptible) capacity; runs resume from the workdir after preemption
  --queued            create through a queued resource instead of a direct create
  --config FILE       config for main.py (default: configs/tpu.py)
  --workdir gs://...  workdir on Cloud Storage, shared by all workers (required for train)
  --repo URL          clone this git repository on the workers instead of copying this checkout
  --dry-run           print every gcloud command instead of running it
  -h, --help          this help

Anything after -- goes to main.py, e.g. -- --config.train.epochs=30
USAGE
}

name=flax-cifar zone= tpu_type=v4-8 version= project= spot=0 queued=0 python=3.12
jax_spec='jax[tpu]' config=configs/tpu.py workdir= repo= dry_run=0 command= extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --zone) zone=$2; shift 2 ;;
    --tpu-type) tpu_type=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --jax) jax_spec=$2; shift 2 ;;
    --project) project=$2; shift 2 ;;
    --spot) spot=1; shift ;;
    --queued) queued=1; shift ;;
    --config) config=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    --repo) repo=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    create|copy|install|train|logs|delete|up)
      [[ -z $command ]] || { echo "error: two commands: $command and $1" >&2; exit 2; }
      command=$1; shift ;;
    *) echo "error: unknown argument '$1' (see ./launch.sh --help)" >&2; exit 2 ;;
  esac
done
[[ -n $command ]] || { usage >&2; exit 2; }
[[ -n $zone ]] || { echo "error: --zone is required (see ./launch.sh --help)" >&2; exit 2; }
[[ $python =~ ^3\.(1[1-9]|[2-9][0-9])(\.[0-9]+)?$ ]] || {
  echo "error: --python $python: flax_cifar needs Python 3.11 or newer" >&2; exit 2; }

default_version() {  # the TPU software version of an accelerator type
  case $1 in
    v5litepod-*|v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) echo tpu-ubuntu2204-base ;;
  esac
}
[[ -n $version ]] || version=$(default_version "$tpu_type")

common=(--zone="$zone")
[[ -z $project ]] || common+=(--project="$project")

quote() {  # an argument as a shell would need it, single-quoted only where needed
  if [[ $1 =~ ^[A-Za-z0-9_./:=@,+~-]*$ ]]; then printf '%s' "$1"
  else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}

run() {  # print the command (dry run) or run it
  if (( dry_run )); then
    local out=() arg
    for arg in "$@"; do out+=("$(quote "$arg")"); done
    echo "${out[*]}"
  else
    "$@"
  fi
}

on_workers() {  # run a shell command on every worker of the slice
  run gcloud compute tpus tpu-vm ssh "$name" "${common[@]}" --worker=all --command="$1"
}

create() {
  local capacity=()
  (( spot )) && capacity=(--spot)
  if (( queued )); then
    run gcloud compute tpus queued-resources create "$name" --node-id="$name" "${common[@]}" \
      --accelerator-type="$tpu_type" --runtime-version="$version" "${capacity[@]}"
    if (( ! dry_run )); then
      until [[ $(gcloud compute tpus queued-resources describe "$name" "${common[@]}" \
                 --format='value(state.state)') == ACTIVE ]]; do sleep 30; done
    fi
  else
    run gcloud compute tpus tpu-vm create "$name" "${common[@]}" \
      --accelerator-type="$tpu_type" --version="$version" "${capacity[@]}"
  fi
}

copy() {
  if [[ -n $repo ]]; then
    on_workers "rm -rf ~/flax_cifar && git clone --depth 1 $repo ~/flax_cifar"
  else
    local here
    here=$(cd "$(dirname "$0")" && pwd)
    local archive=/tmp/flax_cifar_$$.tar.gz
    run tar -C "$here" --exclude=.venv --exclude=workdirs --exclude=.git -czf "$archive" .
    run gcloud compute tpus tpu-vm scp "$archive" "$name:~/flax_cifar.tar.gz" "${common[@]}" --worker=all
    on_workers "rm -rf ~/flax_cifar && mkdir ~/flax_cifar && tar -xzf ~/flax_cifar.tar.gz -C ~/flax_cifar"
  fi
}

install() {
  # uv installs a Python of its own where the image has none of the asked version: every TPU
  # image's python3 is 3.10, older than jax, flax and orbax accept.
  on_workers "cd ~/flax_cifar && { command -v uv >/dev/null || python3 -m pip install --user --quiet uv; } \
&& export PATH=\"\$HOME/.local/bin:\$PATH\" && uv venv --quiet --clear --python $python .venv \
&& uv pip install --quiet --python .venv/bin/python -e '.[tfds,gcs]' $(quote "$jax_spec")"
}

train() {
  [[ $workdir == gs://* ]] || { echo "error: --workdir must be a gs:// path that every worker can reach" >&2; exit 2; }
  local args
  args=$(printf ' %q' --config "$config" --workdir "$workdir" "${extra[@]}")
  # The process id goes to train.pid: `logs` follows the log until that process ends.
  on_workers "cd ~/flax_cifar && { nohup .venv/bin/python main.py$args > train.log 2>&1 & echo \$! > train.pid; }"
}

logs() {
  run gcloud compute tpus tpu-vm ssh "$name" "${common[@]}" --worker=0 \
    --command="tail -n +1 --pid=\$(cat ~/flax_cifar/train.pid) -f ~/flax_cifar/train.log"
}

delete() {
  if (( queued )); then
    run gcloud compute tpus queued-resources delete "$name" "${common[@]}" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$name" "${common[@]}" --quiet
  fi
}

case $command in
  up) create; copy; install; train; logs ;;
  *) "$command" ;;
esac
