#!/usr/bin/env bash
# A whole sweep on one accelerator machine in one call: this checkout and one data archive go
# there, one results archive comes back.
#
#   bash benchmarks/accelerator_sweep.sh pack FOLDER DATA.tar.gz
#       here: the dataset folder (ImageFolder layout) as one file (gzip: JPEG headers repeat)
#   bash benchmarks/accelerator_sweep.sh run DATA.tar.gz SWEEP_FILE OUT_DIR [RUNS_PER_GPU]
#       there: installs .venv (uv; $JAX_SPEC, default jax[cuda12]; JAX_SPEC=none keeps the
#       current one), decodes the data once (arrays form), runs the sweep RUNS_PER_GPU
#       (default 4) at a time on every GPU, and writes OUT_DIR/results.tar.gz: each run's
#       metrics, config and curves, the sweep's table and plot. Checkpoints stay in
#       OUT_DIR/runs: the same command again resumes the unfinished runs.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  pack)
    [ $# -eq 3 ] || { echo "usage: $0 pack FOLDER DATA.tar.gz" >&2; exit 2; }
    [ -d "$2/train" ] && [ -d "$2/test" ] || { echo "error: $2 has no train/ and test/" >&2; exit 1; }
    tar -C "$2" -czf "$3" train test
    echo "$3: $(du -h "$3" | cut -f1)"
    ;;
  run)
    [ $# -ge 4 ] || { echo "usage: $0 run DATA.tar.gz SWEEP_FILE OUT_DIR [RUNS_PER_GPU]" >&2; exit 2; }
    archive=$2 sweep_file=$3 out=$4 per_gpu=${5:-4}
    [ -f "$archive" ] || { echo "error: no data archive $archive" >&2; exit 1; }
    [ -f "$sweep_file" ] || { echo "error: no sweep file $sweep_file" >&2; exit 1; }
    mkdir -p "$out"
    python=.venv/bin/python
    if [ "${JAX_SPEC:-jax[cuda12]}" != none ]; then
      [ -x "$python" ] || python3 -m venv .venv
      .venv/bin/pip install --quiet uv
      .venv/bin/uv pip install --quiet --python "$python" -e '.[tfds]' "${JAX_SPEC:-jax[cuda12]}"
    fi
    if [ ! -f "$out/arrays/info.json" ]; then  # decoded once; a rerun reuses it
      rm -rf "$out/folder" "$out/arrays"
      mkdir -p "$out/folder"
      tar -C "$out/folder" -xzf "$archive"
      "$python" -m flax_cifar.data.to_arrays --dataset "folder:$out/folder" --out "$out/arrays"
      rm -rf "$out/folder"
    fi
    gpus=$(nvidia-smi -L 2>/dev/null | wc -l || true)
    if [ "${gpus:-0}" -gt 0 ]; then
      slots=$(for g in $(seq 0 $((gpus - 1))); do for _ in $(seq "$per_gpu"); do echo "$g"; done; done | paste -sd,)
      parallel=$((gpus * per_gpu))
      export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several runs share each GPU
      gpu_flags=(--gpus "$slots")
    else
      parallel=1 gpu_flags=()
    fi
    status=0
    "$python" -m flax_cifar.sweep "$sweep_file" --root "$out/runs" --parallel "$parallel" \
      "${gpu_flags[@]}" --override "data.dataset=arrays:$out/arrays" || status=$?
    # Everything small, also after a failed run: the table says which runs finished.
    (cd "$out" && find runs \( -name checkpoints -o -name tensorboard \) -prune -o -type f -print \
      | tar -czf results.tar.gz -T -)
    echo "$out/results.tar.gz: $(du -h "$out/results.tar.gz" | cut -f1)"
    exit "$status"
    ;;
  *)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
