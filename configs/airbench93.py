"""airbench93 reproduced: KellerJordan/cifar10-airbench's lib_airbench93 (dense convs,
widths 64/128/128, 569,656 parameters as PyTorch counts them, 640 of them BatchNorm scales
held at 1), 11 epochs. A reference config, for calibration: not a candidate for the default.

Run:
  python main.py --config configs/airbench93.py --config.data.dataset=folder:/path/to/cifar10

Expected result: docs/calibration.md (airbench's own code on the same JPEG copy and CPU:
89.48% with its test-time views; published: 93.00% on the original CIFAR-10, n=50).
"""
import ml_collections

from configs import airnet


def get_config() -> ml_collections.ConfigDict:
    config = airnet.get_config()
    config.model_args = ml_collections.ConfigDict(dict(
        whiten_kernel=2,                  # the frozen whitening conv's patch side
        whiten_features=24,               # 2 x 2*2*3: every patch direction and its negative
        whiten_bias=True,                 # with a bias, trained for whiten_bias_epochs below
        block_features=(64, 128, 128),
        block_depths=(2, 2, 2),
        block_dilations=(1, 1, 1),
        dense_convs=6,                    # every conv dense 3x3
        depthwise=False,
        residual=False,
        activation='gelu',
        dirac=True,
        bn_scale=False,
        bn_momentum=0.6,
        bn_epsilon=1e-12,
        head_scale=1 / 9,
        weight_init='torch',              # PyTorch's default initializers
    ))
    config.train.epochs = 11
    # airbench decays every trained parameter (its BatchNorm biases and the whitening bias
    # too), the biases' learning rate 64x (lr_mults from configs/airnet.py).
    config.optim.wd_mults = (('.*', 1.0),)
    config.optim.frozen_after_epochs = (('whiten_conv/bias', 3),)
    config.average.lookahead.start_epoch = 0  # airbench93 averages from its first step...
    config.average.lookahead.sync_each_epoch = False  # ...and takes it at the end only
    return config
