# Sourced by the device scripts: the wheel, the shim, and the benchmark helper.
pip install -q --no-index --no-deps --target /tmp/site .gpu/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD/.gpu:$PWD FLAX_CIFAR_GPU_SHIM=1 PYTHONUNBUFFERED=1
nvidia-smi -L; T0=$(date +%s)
bench() { timeout 90 python3 benchmarks/throughput.py --json --steps 50 --repeats 3 --epoch_steps 100 "$@" 2>&1 | tail -1; }
# sweep JOBS: the job list one run after another in what is left of ${BUDGET:-540} s.
sweep() {
  timeout $(( ${BUDGET:-540} - ($(date +%s) - T0) )) python3 .gpu/sweep.py $1 0 1 $OUT > $OUT/sweep.log 2>&1
  for d in /tmp/sweep/*/; do cp $d/metrics.jsonl $OUT/$(basename $d).metrics.jsonl 2>/dev/null; done
  grep "Test set\|Error" $OUT/sweep.log | tail -5; cat $OUT/results0.jsonl
}
