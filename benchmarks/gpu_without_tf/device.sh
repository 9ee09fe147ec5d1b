# One device call (carry [".gpu"]; copy this folder's files and the packed data into .gpu/).
# 1) depthwise 'shifts' vs 'conv' on GPU for the default and seed-depthwise nets, PyTorch
# grouped beside them; 2) 15-epoch runs ONE AT A TIME (six in parallel were slower than one
# after another: the loop is host-bound) with the faster depthwise implementation of 1).
pip install -q --no-index --no-deps --target /tmp/site .gpu/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD/.gpu:$PWD FLAX_CIFAR_GPU_SHIM=1 PYTHONUNBUFFERED=1
nvidia-smi -L; T0=$(date +%s)
bench() { timeout 90 python3 benchmarks/throughput.py --json --steps 50 --repeats 3 --epoch_steps 100 "$@" 2>&1 | tail -1; }
for impl in shifts conv; do
  bench --config configs/default.py --depthwise_implementation=$impl | tee -a $OUT/throughput.jsonl > $OUT/default_$impl.json
  bench --config configs/seed.py --config.model_args.depthwise=True --depthwise_implementation=$impl | tee -a $OUT/throughput.jsonl
done
(cd .gpu && FLAX_CIFAR_GPU_SHIM=0 python3 torch_gpu.py 128 100 grouped) 2>&1 | grep torch-gpu | tee -a $OUT/throughput.jsonl
export DEPTHWISE=$(python3 -c "import json; r = {i: json.load(open('$OUT/default_'+i+'.json'))['train_images_per_s'] for i in ('shifts', 'conv')}; print(max(r, key=r.get))" 2>/dev/null || echo conv)
echo "sweep depthwise: $DEPTHWISE after $(( $(date +%s) - T0 )) s"
LEFT=$(( ${BUDGET:-540} - ($(date +%s) - T0) ))
timeout $LEFT python3 .gpu/sweep.py ${JOBS:-.gpu/jobs.json} 0 1 $OUT > $OUT/sweep.log 2>&1
for d in /tmp/sweep/*/; do cp $d/metrics.jsonl $OUT/$(basename $d).metrics.jsonl 2>/dev/null; done
grep "Test set\|Error" $OUT/sweep.log | tail -5; cat $OUT/results0.jsonl
