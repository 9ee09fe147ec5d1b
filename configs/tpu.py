"""The default network on a Cloud TPU: its batch of 1024 split over the cores, several
steps per call, bfloat16 activations.

Run (see launch.sh and the README's "Scaling out"):
  python main.py --config configs/tpu.py --workdir gs://BUCKET/flax_cifar/tpu

Expected result: not measured yet (no TPU was available to this project).
"""
import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.eval.batch_size = 2000
    # A TPU step of this network is short next to Python's dispatch of it:
    # run 8 steps per call, as one program (the usual TPU practice; docs/speed.md).
    config.train.steps_per_dispatch = 8
    config.half_precision = True       # bfloat16 on the MXU; parameters stay float32
    return config
