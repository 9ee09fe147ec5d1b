"""Where AirNet computes and how rich its spatial kernels are, at the 5-epoch proxy (schedule
compressed, Lookahead from epoch 1), two seeds each: pooling after each block's second conv
(the same parameters at twice the resolution), two or four channels a group in the undilated
3x3 kernels, and both.

  python -m flax_cifar.sweep configs/sweeps/airnet_layouts.py --root sweeps/airnet_layouts \
      --override data.dataset=folder:/path/to/cifar10

Results: docs/search.md's layout table.
"""


def get_sweep():
    return dict(
        config='configs/default.py',
        overrides={'train.epochs': 5, 'average.lookahead.start_epoch': 1},
        runs={
            'pool_late': {'model_args.pool_after': (2, 2, 2)},          # 192,544 parameters
            'grouped2': {'model_args.group_channels': 2},               # 197,152
            'pool_late_grouped2': {'model_args.pool_after': (2, 2, 2),  # 197,152
                                   'model_args.group_channels': 2},
            'grouped4': {'model_args.group_channels': 4,                # 194,592
                         'model_args.block_features': (64, 192, 240)},
            'default': {},  # last: docs/search.md has its earlier proxy runs  # 192,544
        },
        seeds=[0, 1],
    )
