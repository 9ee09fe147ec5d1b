"""The seed write-up's network (185,936 parameters, dense 3x3 "depthwise" convs), 15 epochs.

Run:
  python main.py --config configs/seed.py --config.dataset=folder:../shared/data/cifar10-jpeg

Expected result: see the README's results table (measured runs, with command and hardware).
The seed itself reached 69.2% in 15 epochs (batch 4, PyTorch).
"""
import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = 'seed'
    config.model_args = ml_collections.ConfigDict(dict(
        depthwise=False,     # True: true depthwise 3x3 convs (57,056 parameters)
        dropout_rate=0.05,   # after every BatchNorm, as in the seed
    ))
    config.learning_rate = 0.1
    return config
