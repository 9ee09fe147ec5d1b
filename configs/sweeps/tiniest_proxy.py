"""tiniest_scaled.py's recipe at the 5-epoch proxy (its one-cycle compressed to 5 epochs),
for the widest design and tiniest's own widths, seed 0: beside AirNet's proxy (83.5%), does
computation at 32x32 and 16x16 promise more than AirNet's layout before 15-epoch runs?

  python -m flax_cifar.sweep configs/sweeps/tiniest_proxy.py --root sweeps/tiniest_proxy \
      --override data.dataset=folder:/path/to/cifar10

Results: docs/search.md.
"""
from configs.sweeps import tiniest_scaled


def get_sweep():
    sweep = tiniest_scaled.get_sweep()
    return dict(config=sweep['config'], overrides={**sweep['overrides'], 'train.epochs': 5},
                runs={name: sweep['runs'][name] for name in ('wide_64_112', 'tiniest')},
                seeds=[0])
