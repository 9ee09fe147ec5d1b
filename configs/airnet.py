"""AirNet: airbench's layout and recipe, depthwise-separable and dilated, 192,544 parameters.

Run:
  python main.py --config configs/airnet.py --config.dataset=folder:/path/to/cifar10

Expected result (JPEG q75 copy of CIFAR-10, seed 0): 87.34% test accuracy after 15 epochs with
the configured test-time flips and shifts (86.16% without), 29.8 min of training on a 2-core
x86-64 CPU with jax 0.12 (docs/airnet.md).
"""
import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = 'airnet'
    config.model_args = ml_collections.ConfigDict(dict(
        whiten_kernel=2,                  # the frozen whitening conv's patch side
        whiten_features=24,               # 2 x 2*2*3: every patch direction and its negative
        block_features=(64, 192, 256),    # one block per width; each pools 2x2
        block_depths=(2, 2, 2),           # convs per block
        block_dilations=(2, 2, 1),        # kernel_dilation of each block's later convs
        dense_convs=1,                    # block 1's first 3x3 conv dense (24 inputs)
        depthwise=True,                   # true depthwise 3x3 convs elsewhere
        residual=False,                   # shortcuts around each block's later convs
        activation='gelu',
        dirac=True,                       # identity-initialized convs
        bn_scale=False,                   # BatchNorm scales held at 1
        bn_momentum=0.6,                  # fast running statistics (PyTorch's 0.4)
        head_scale=1 / 9,                 # logits scaled down
    ))
    config.stem_whitening = 'whiten_conv'
    config.batch_size = 1024
    # airbench's decoupled hyperparameters, for a mean loss over 1024 images: lr 11.5 /
    # (1 + 1 / (1 - 0.85)) = 1.5 per step, L2 0.0153 / 11.5 = 0.00133.
    config.learning_rate = 1.5
    config.momentum = 0.85
    config.nesterov = True
    config.weight_decay = 0.00133
    config.lr_mults = (('_bn/bias$', 64.0),)  # BatchNorm biases learn 64x faster (not decayed)
    config.schedule = 'triangle'          # linear up from lr/5 to lr, then down to lr*0.07
    config.warmup_fraction = 0.23
    config.onecycle_div_factor = 5.0
    config.onecycle_final_div_factor = 0.2 / 0.07
    config.label_smoothing = 0.2
    config.crop_padding = 2               # random translation by up to 2 pixels...
    config.crop_pad_mode = 'reflect'      # ...with reflected borders
    config.alternating_flip = True        # each image mirrored in every other epoch
    # Lookahead on the weights and BN statistics: every 5 steps from epoch 3 on
    # (training/averaging.py).
    config.lookahead = ml_collections.ConfigDict(dict(every=5, decay=0.95, power=3.0,
                                                      start_epoch=3, sync_each_epoch=True))
    config.eval_translate = 1             # test-time views: flips and 1-pixel shifts
    config.eval_batch_size = 1000
    config.log_every_steps = 8
    config.checkpoint_every_steps = 48
    return config
