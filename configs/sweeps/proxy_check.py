"""The 5-epoch proxy on designs that also have 15-epoch runs: does it rank them alike?

  python -m flax_cifar.sweep configs/sweeps/proxy_check.py --root sweeps/proxy_check \
      --override data.dataset=folder:/path/to/cifar10

Each design keeps its own config and recipe, its schedule compressed to 5 epochs (Lookahead,
where used, from epoch 1). The rank correlation against the 15-epoch runs: docs/search.md.
"""


def get_sweep():
    airnet = {'config': 'configs/airnet.py', 'average.lookahead.start_epoch': 1}
    return dict(
        config='configs/dsresnet.py',
        overrides={'train.epochs': 5},
        runs={
            'dsresnet': {},
            'seednet': {'config': 'configs/seednet.py'},
            'airnet': airnet,
            'airnet_batch512': {**airnet, 'train.batch_size': 512, 'optim.learning_rate': 0.75},
            'splitnet': {'config': 'configs/splitnet.py', 'average.lookahead.start_epoch': 1},
        },
        seeds=[0],
    )
