"""The default's recipe, one piece taken out at a time, at the 5-epoch proxy (schedule
compressed, Lookahead from epoch 1); seed 0.

  python -m flax_cifar.sweep configs/sweeps/airnet_ablation.py --root sweeps/airnet_ablation \
      --override data.dataset=folder:/path/to/cifar10

The test-time views' share comes from `--mode=evaluate` of the full recipe (every view is
reported). Results: docs/search.md's ablation table.
"""


def get_sweep():
    return dict(
        config='configs/default.py',
        overrides={'train.epochs': 5, 'average.lookahead.start_epoch': 1},
        runs={
            'default': {},
            'no_whitening': {'whitening.layer': ''},    # the 2x2 stem conv trained instead
            'no_lookahead': {'average.lookahead.every': 0},
            'random_flip': {'augment.alternating_flip': False},
            'no_translate': {'augment.crop_padding': 0},
            'no_dirac': {'model_args.dirac': False},
            'no_bias_lr_mult': {'optim.lr_mults': ()},     # BatchNorm biases at the common rate
            'relu': {'model_args.activation': 'relu'},
            'trained_bn_scale': {'model_args.bn_scale': True},
        },
        seeds=[0],
    )
