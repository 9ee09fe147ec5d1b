"""The default's patch whitening on a JPEG copy: its eps (how much the weakest patch
directions, on JPEG the decoder's artefacts, are amplified) and the directions kept, at the
5-epoch proxy (schedule compressed, Lookahead from epoch 1); seed 0.

  python -m flax_cifar.sweep configs/sweeps/airnet_whitening.py --root sweeps/airnet_whitening \
      --override data.dataset=folder:/path/to/cifar10

Results: docs/search.md.
"""


def get_sweep():
    return dict(
        config='configs/default.py',
        overrides={'train.epochs': 5, 'average.lookahead.start_epoch': 1},
        runs={
            'eps_5e-4': {},  # airbench's, the default
            'eps_5e-3': {'whitening.eps': 5e-3},
            'eps_5e-2': {'whitening.eps': 5e-2},
            'eps_5e-1': {'whitening.eps': 5e-1},
            # The 8 strongest of the 12 directions of a 2x2x3 patch, and their negatives.
            'top_8_directions': {'model_args.whiten_features': 16},
        },
        seeds=[0],
    )
