# One device call (prepared 2026-11-26 for the next GPU session; not committed: the GPU image
# has jax+CUDA but no TensorFlow/TFDS, sitecustomize.py shims them). Carry: [".gpu"].
# 1) depthwise 'shifts' vs 'conv' on GPU, jax vs torch, alone; 2) 15-epoch runs ONE AT A TIME
# (six in parallel were slower than one after another: the loop is host-bound).
pip install -q --no-index --no-deps --target /tmp/site .gpu/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD/.gpu:$PWD FLAX_CIFAR_GPU_SHIM=1 PYTHONUNBUFFERED=1
nvidia-smi -L; T0=$(date +%s)
for c in "configs/seed.py --config.model_args.depthwise=True --depthwise_implementation=shifts" \
         "configs/seed.py --config.model_args.depthwise=True --depthwise_implementation=conv" \
         "configs/default.py --depthwise_implementation=shifts" "configs/default.py --depthwise_implementation=conv"; do
  timeout 90 python3 benchmarks/throughput.py --config $c --json --steps 100 --repeats 5 --epoch_steps 200 2>&1 | tail -1 | tee -a $OUT/throughput.jsonl
done
(cd .gpu && FLAX_CIFAR_GPU_SHIM=0 python3 torch_gpu.py 128 100; FLAX_CIFAR_GPU_SHIM=0 python3 torch_gpu.py 128 100 grouped) 2>&1 | grep torch-gpu | tee -a $OUT/throughput.jsonl
LEFT=$(( ${BUDGET:-540} - ($(date +%s) - T0) ))
timeout $LEFT python3 .gpu/sweep.py ${JOBS:-.gpu/jobs.json} 0 1 $OUT > $OUT/sweep.log 2>&1
grep "Test set\|Error" $OUT/sweep.log | tail -5; cat $OUT/results0.jsonl
