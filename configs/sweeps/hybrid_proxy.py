"""AirNet with dense 3x3 convs where the resolution is high, separable and dilated after:
a 5-epoch proxy (the whole recipe, its schedule compressed).

  python -m flax_cifar.sweep configs/sweeps/hybrid_proxy.py --root sweeps/hybrid_proxy \
      --override dataset=folder:/path/to/cifar10

Results: docs/search.md.
"""


def get_sweep():
    return dict(
        config='configs/airnet.py',
        overrides={'num_epochs': 5, 'lookahead.start_epoch': 1},
        runs={
            # Blocks 1 and 2 dense (40 and 96 wide), block 3 separable: 193,536 parameters.
            'dense4_40_96_176': {'model_args.block_features': (40, 96, 176),
                                 'model_args.dense_convs': 4},
            # Block 1 dense at 64, the rest separable: 182,496.
            'dense2_64_128_256': {'model_args.block_features': (64, 128, 256),
                                  'model_args.dense_convs': 2},
            # Blocks 1 and 2 dense but narrower, block 3 wide: 189,392.
            'dense4_32_80_256': {'model_args.block_features': (32, 80, 256),
                                 'model_args.dense_convs': 4},
        },
        seeds=[0],
    )
