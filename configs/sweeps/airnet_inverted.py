"""Inverted residuals in AirNet's blocks 2 and 3 at the 5-epoch proxy (schedule compressed,
Lookahead from epoch 1), two seeds each: each separable conv's input widened 4x or 2x by a
1x1 conv before its depthwise 3x3 (MobileNetV2), narrower blocks paying for it, beside the
default.

  python -m flax_cifar.sweep configs/sweeps/airnet_inverted.py --root sweeps/airnet_inverted \
      --override data.dataset=folder:/path/to/cifar10

Results (docs/search.md): means of seeds 0-1, inverted4 82.08%, inverted2 82.99%, default
83.06%: no gain.
"""


def get_sweep():
    return dict(
        config='configs/default.py',
        overrides={'train.epochs': 5, 'average.lookahead.start_epoch': 1},
        runs={
            'inverted4': {'model_args.block_expansions': (1, 4, 4),      # 184,480 parameters
                          'model_args.block_features': (64, 64, 80)},
            'inverted2': {'model_args.block_expansions': (1, 2, 2),      # 194,208
                          'model_args.block_features': (64, 96, 128)},
            'default': {},                                              # 192,544
        },
        seeds=[0, 1],
    )
