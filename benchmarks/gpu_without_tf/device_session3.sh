# The third session's one call (carry [".gpu"]; copy this folder's files into .gpu/):
# 1) the default net's real epoch with 1 and 10 steps per call (config.steps_per_dispatch);
# 2) jobs_session3.json, two sweep.py workers side by side: weight averaging on the default
# net over three seeds, and the seed network's recipe (dropout 0; lr, smoothing, batch, ...).
source .gpu/setup.sh
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45  # two processes share the GPU
for k in 1 10; do
  timeout 150 python3 benchmarks/throughput.py --json --steps 50 --repeats 3 --epoch_steps 100 \
    --config configs/default.py --config.steps_per_dispatch=$k 2>&1 | tail -1 | tee -a $OUT/throughput.jsonl
done
LEFT=$(( ${BUDGET:-540} - ($(date +%s) - T0) )); echo "sweep from $(( $(date +%s) - T0 )) s, $LEFT s left"
for w in 0 1; do
  timeout $LEFT python3 .gpu/sweep.py .gpu/jobs_session3.json $w 2 $OUT > $OUT/sweep$w.log 2>&1 &
done
wait
(cd /tmp/sweep && tar czf $OUT/metrics.tgz */metrics.jsonl) 2>/dev/null
grep -h "Error\|Traceback" $OUT/sweep*.log | tail -5; cat $OUT/results*.jsonl
