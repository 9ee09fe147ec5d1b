"""Every design of the search for 90%, ranked by the 5-epoch proxy (each design's own recipe,
its schedule compressed to 5 epochs; Lookahead, where used, from epoch 1).

  python -m flax_cifar.sweep configs/sweeps/search.py --root sweeps/search \
      --override data.dataset=folder:/path/to/cifar10

The proxy's rank correlation with 15-epoch runs (configs/sweeps/proxy_check.py) and the
results: docs/search.md.
"""
from configs.sweeps import proxy_check


def get_sweep():
    sweep = proxy_check.get_sweep()  # its five designs, then the later ones
    airnet = sweep['runs']['airnet']
    sweep['runs'].update({
        # Dense 3x3 convs where the resolution is high, separable and dilated after.
        'dense4_40_96_176': {**airnet, 'model_args.block_features': (40, 96, 176),
                             'model_args.dense_convs': 4},
        'dense2_64_128_256': {**airnet, 'model_args.block_features': (64, 128, 256),
                              'model_args.dense_convs': 2},
        'dense4_32_80_256': {**airnet, 'model_args.block_features': (32, 80, 256),
                             'model_args.dense_convs': 4},
        # Muon (optax.contrib) on the dense and pointwise kernels.
        'airnet_muon0.24': {**airnet, 'optim.name': 'muon', 'optim.muon.learning_rate': 0.24},
        'airnet_muon0.08': {**airnet, 'optim.name': 'muon', 'optim.muon.learning_rate': 0.08},
        'airnet_muon0.6': {**airnet, 'optim.name': 'muon', 'optim.muon.learning_rate': 0.6},
    })
    return sweep
