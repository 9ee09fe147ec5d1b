"""SplitNet: channels split over depthwise kernels (one dilated), gated 1x1 mixing, scaled
shortcuts (after xvel/cifar10-tiniest), with AirNet's recipe; 197,116 parameters.

Run:
  python main.py --config configs/splitnet.py --config.data.dataset=folder:/path/to/cifar10

Expected result (seed 0, JPEG q75 copy of CIFAR-10): 73.19% test accuracy after a 5-epoch run
(--config.train.epochs=5), 17.7 min on a 2-core x86-64 CPU with jax 0.12; no 15-epoch run yet
(docs/search.md).
"""
import ml_collections

from configs import airnet


def get_config() -> ml_collections.ConfigDict:
    config = airnet.get_config()
    config.model = 'splitnet'
    config.model_args = ml_collections.ConfigDict(dict(
        whiten_kernel=3,                  # the frozen whitening conv's patch side
        whiten_features=54,               # 2 x 3*3*3: every patch direction and its negative
        stem_pool=True,                   # stage 1 at 16x16
        stage_features=(80, 136),         # one stage per width; each after the first pools
        stage_depths=(3, 2),              # SplitBlocks per stage
        kernels=(0, 3, 5, 5),             # each channel quarter's depthwise kernel (0: none)
        dilations=(1, 1, 1, 3),           # and its kernel_dilation
        expansion=1.0,                    # gated hidden width over the block's width
        norm='layer',                     # LayerNorm ('batch': BN, frozen scale: did not learn)
        activation='tanhexp',             # the gate's activation
        bn_momentum=0.6,
    ))
    config.optim.lr_mults = ()         # its norms are LayerNorms: no '_bn/bias' to speed up
    config.train.batch_size = 512
    config.optim.learning_rate = 0.2            # gated blocks diverge (NaN) at AirNet's 0.75
    config.train.log_every_steps = 16
    config.checkpoint.every_steps = 96
    return config
