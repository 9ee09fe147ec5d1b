"""AirNet designs ranked by a 5-epoch proxy (the whole recipe, its schedule compressed).

  python -m flax_cifar.sweep configs/sweeps/airnet_proxy.py --root sweeps/airnet_proxy \
      --override data.dataset=folder:/path/to/cifar10

Results and how the proxy ranks against 15-epoch runs: docs/airnet.md.
"""


def get_sweep():
    return dict(
        config='configs/airnet.py',
        overrides={'train.epochs': 5, 'average.lookahead.start_epoch': 1},
        runs={
            'airnet': {},
            # Depth at 15x15 and 7x7, with shortcuts: 172k parameters.
            'deep_residual': {'model_args.block_features': (64, 128, 256),
                              'model_args.block_depths': (3, 3, 2),
                              'model_args.residual': True},
            # Block 1 wider (more computation at 31x31), block 2 narrower: 188k.
            'wide_first': {'model_args.block_features': (96, 160, 256)},
            'no_dilation': {'model_args.block_dilations': (1, 1, 1)},
        },
        seeds=[0],
    )
