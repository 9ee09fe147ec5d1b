# One device call (carry [".gpu"]; copy this folder's files and the packed data into .gpu/).
# 1) depthwise 'shifts' vs 'conv' on GPU for the default and seed-depthwise nets, PyTorch
# grouped beside them; 2) 15-epoch runs ONE AT A TIME (six in parallel were slower than one
# after another: the loop is host-bound) with the faster depthwise implementation of 1).
source .gpu/setup.sh
for impl in shifts conv; do
  bench --config configs/default.py --depthwise_implementation=$impl | tee -a $OUT/throughput.jsonl > $OUT/default_$impl.json
  bench --config configs/seed.py --config.model_args.depthwise=True --depthwise_implementation=$impl | tee -a $OUT/throughput.jsonl
done
(cd .gpu && FLAX_CIFAR_GPU_SHIM=0 python3 torch_gpu.py 128 100 grouped) 2>&1 | grep torch-gpu | tee -a $OUT/throughput.jsonl
export DEPTHWISE=$(python3 -c "import json; r = {i: json.load(open('$OUT/default_'+i+'.json'))['train_images_per_s'] for i in ('shifts', 'conv')}; print(max(r, key=r.get))" 2>/dev/null || echo conv)
echo "sweep depthwise: $DEPTHWISE after $(( $(date +%s) - T0 )) s"
sweep ${JOBS:-.gpu/jobs.json}
