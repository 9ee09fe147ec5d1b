"""Tiniest: xvel/cifar10-tiniest reproduced (97,530 parameters): its network, AdamW, one-cycle
cosine schedule over 200 epochs, weight average, and augmentation (flip, replicate-padded crop,
rotation, sharpness, colour jiggle, mixup ramping up). A reference config, for calibration.

Run (the first 20 epochs of its 200-epoch schedule, as docs/calibration.md compares them):
  python main.py --config configs/tiniest.py --config.data.dataset=folder:/path/to/cifar10 \
      --config.train.epochs=20 --config.train.schedule_epochs=200

Expected result: docs/calibration.md (its published curve: about 88.5% at epoch 15, 90% near
epoch 20, 94.4% at 200, on the original CIFAR-10).
"""
import ml_collections

from configs import dsresnet


def get_config() -> ml_collections.ConfigDict:
    config = dsresnet.get_config()
    config.model = 'tiniest'
    config.model_args = ml_collections.ConfigDict(dict(
        widths=(48, 80),             # stage 1 at 32x32, stage 2 at 16x16
        depths=(3, 3),               # blocks per stage
        hidden=(48, 80),             # gated width of each stage's blocks
        kernels=(0, 3, 7, 7),        # each channel quarter's depthwise kernel (0: none)
        dilations=(1, 1, 1, 3),      # and its dilation (after a 3x3 average)
        down_groups=16,              # feature groups of the 4x4 stride-2 conv
    ))
    config.data.normalize = 'centered'    # its input: pixels / 255 - 0.5
    config.whitening.layer = ''
    # Augmentation: kornia's RandomHorizontalFlip, RandomCrop(padding 4, replicate),
    # RandomAffine(+-15 degrees, p=0.95, reflection), RandomSharpness((1, 2.2), p=0.95),
    # ColorJiggle(0.1, 0.1, 0.5, 0.05, p=0.9), then RandomMixUpV2 with weights in
    # [0, min(epoch / 200, 0.5)).
    config.augment.crop_padding = 4
    config.augment.crop_pad_mode = 'edge'
    config.augment.rotate_degrees = 15.0
    config.augment.rotate_p = 0.95
    config.augment.sharpen_p = 0.95
    config.augment.sharpen_factors = (1.0, 2.2)
    config.augment.color_jiggle_p = 0.9
    config.augment.color_jiggle = (0.1, 0.1, 0.5, 0.05)
    config.augment.mixup_max = 0.5
    config.augment.mixup_ramp = 0.5          # the bound reaches 0.5 half way through the schedule
    config.train.label_smoothing = 0.0
    # AdamW at 0.02, PyTorch's OneCycleLR(pct_start=0.01, cosine, final_div_factor=0.4):
    # 2 epochs up from 0.0008, cosine down to 0.002 at epoch 200.
    config.train.batch_size = 256
    config.train.epochs = 200
    config.optim.name = 'adamw'
    config.optim.learning_rate = 0.02
    config.optim.schedule = 'onecycle'
    config.optim.warmup_fraction = 0.01
    config.optim.start_div_factor = 25.0
    config.optim.final_div_factor = 0.4
    config.optim.weight_decay = 0.01       # PyTorch AdamW's default, on every parameter
    config.optim.wd_mults = (('.*', 1.0),)
    # Evaluated: a moving average of the weights (decay 0.999 from the first step on).
    config.average.ema_decay = 0.999
    config.average.ema_warmup = False
    config.eval.flip = False
    config.eval.translate = 0
    config.train.log_every_steps = 15
    config.checkpoint.every_steps = 195
    return config
