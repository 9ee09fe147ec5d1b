# One device call for the next lending (carry [".gpu"]; copy this folder's files and the
# packed data into .gpu/). 1) the default net's real epoch with 1 and 20 steps per call
# (config.steps_per_dispatch): does the scan remove the host-bound loop seen on the H200?
# 2) 15-epoch runs of jobs_recipe.json: weight averaging and Cutout, over seeds.
source .gpu/setup.sh
for k in 1 20; do
  bench --config configs/default.py --config.steps_per_dispatch=$k | tee -a $OUT/throughput.jsonl
done
sweep ${JOBS:-.gpu/jobs_recipe.json}
