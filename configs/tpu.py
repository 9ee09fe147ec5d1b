"""The default network on a Cloud TPU: a larger global batch, scaled learning rate.

Run (see launch.sh and the README's "Scaling out"):
  python main.py --config configs/tpu.py --workdir gs://BUCKET/flax_cifar/tpu

Expected result: not measured yet (no TPU was available to this project).
"""
import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.batch_size = 1024           # global batch; every TPU core gets an equal share
    config.eval_batch_size = 2000
    config.learning_rate = 0.8         # linear scaling of the default's 0.2 at batch 128, damped
    config.log_every_steps = 10
    # A TPU step of this network takes well under a millisecond, less than Python's dispatch
    # of it: run 10 steps per call, as one program (the usual TPU practice; docs/speed.md).
    config.steps_per_dispatch = 10
    config.half_precision = True       # bfloat16 on the MXU; parameters stay float32
    return config
