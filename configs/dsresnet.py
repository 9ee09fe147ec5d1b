"""DSResNet (depthwise-separable, dilated, residual), 195,722 parameters: the default until
AirNet overtook it.

Run:
  python main.py --config configs/dsresnet.py --config.data.dataset=folder:/path/to/cifar10

Expected result (JPEG q75 copy of CIFAR-10): 86.90% test accuracy after 15 epochs with the
test-time flip, mean of seeds 0-2 (86.83-86.96%), 117-147 min on one core of a 2-core x86-64
CPU with jax 0.12 (docs/results.md).
"""
import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = 'dsresnet'
    config.model_args = ml_collections.ConfigDict(dict(
        stem_features=32,              # dense 3x3 stem at 32x32
        stage_features=(96, 192, 256),  # one stage per width; each halves the resolution
        stage_depths=(1, 1, 1),        # residual separable units per stage
        stage_dilations=(2, 2, 1),     # kernel_dilation of the residual units' 3x3 convs
        depthwise=True,                # feature_group_count=in_features in the 3x3 convs
        dropout_rate=0.0,              # dropout on the residual branches
    ))
    config.whitening.layer = 'stem_conv'
    config.augment.crop_padding = 4            # zero-padded random crops, random flips
    config.augment.crop_pad_mode = 'constant'
    config.augment.alternating_flip = False
    config.eval.translate = 0          # test-time flip only
    # SGD with Nesterov momentum on a one-cycle schedule, L2 on the kernels.
    config.train.batch_size = 128
    config.optim.learning_rate = 0.2
    config.optim.schedule = 'onecycle'
    config.optim.warmup_fraction = 0.25
    config.optim.start_div_factor = 25.0
    config.optim.final_div_factor = 1e4
    config.optim.momentum = 0.9
    config.optim.weight_decay = 5e-4
    config.train.label_smoothing = 0.1
    config.optim.lr_mults = ()
    config.average.lookahead.every = 0
    config.train.log_every_steps = 20
    config.checkpoint.every_steps = 200
    return config
