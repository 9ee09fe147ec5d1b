"""AirNet with Muon (optax.contrib) on its dense and pointwise conv kernels: a 5-epoch proxy.

  python -m flax_cifar.sweep configs/sweeps/muon_proxy.py --root sweeps/muon_proxy \
      --override dataset=folder:/path/to/cifar10

Results: docs/search.md.
"""


def get_sweep():
    return dict(
        config='configs/airnet.py',
        overrides={'num_epochs': 5, 'lookahead.start_epoch': 1},
        grid={'muon_learning_rate': [0.24, 0.08]},
        seeds=[0],
    )
