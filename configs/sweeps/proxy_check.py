"""The 5-epoch proxy on designs that also have 15-epoch runs: does it rank them alike?

  python -m flax_cifar.sweep configs/sweeps/proxy_check.py --root sweeps/proxy_check \
      --override dataset=folder:/path/to/cifar10

Each design keeps its own config and recipe, its schedule compressed to 5 epochs (Lookahead,
where used, from epoch 1). The rank correlation against the 15-epoch runs: docs/search.md.
"""


def get_sweep():
    airnet = {'config': 'configs/airnet.py', 'lookahead.start_epoch': 1}
    return dict(
        config='configs/dsresnet.py',
        overrides={'num_epochs': 5},
        runs={
            'dsresnet': {},
            'seednet': {'config': 'configs/seednet.py'},
            'airnet': airnet,
            'airnet_batch512': {**airnet, 'batch_size': 512, 'learning_rate': 0.75},
            'splitnet': {'config': 'configs/splitnet.py', 'lookahead.start_epoch': 1},
        },
        seeds=[0],
    )
