"""tiniest's layout (stages at 32x32 and 16x16; gated blocks whose channel quarters get no,
3x3, 7x7 and dilated 7x7 depthwise kernels) scaled to about 200k parameters, on a schedule
built for 15 epochs instead of its 200; 3 seeds each.

  python -m flax_cifar.sweep configs/sweeps/tiniest_scaled.py --root sweeps/tiniest_scaled \
      --override data.dataset=folder:/path/to/cifar10

Expected result: not yet run (tiniest's 97,530 parameters take about 12 minutes an epoch on
a 2-core CPU, these about twice that: a sweep for an accelerator). Its calibration, and the
search it continues: docs/calibration.md, docs/search.md.
"""


def get_sweep():
    return dict(
        config='configs/tiniest.py',
        overrides={
            'train.epochs': 15, 'train.schedule_epochs': 0,
            # One cycle over the 15 epochs: up in 0.75 of an epoch, then down to 1/1000 of
            # the peak (tiniest's own ends at 1/10 after 200 epochs).
            'optim.warmup_fraction': 0.05, 'optim.final_div_factor': 40.0,
            # Mixup rising to 0.1 over the run (tiniest's bound at its epoch 15 is 0.075).
            'augment.mixup_max': 0.1, 'augment.mixup_ramp': 1.0,
            # The average follows the weights from the start (15 epochs are 2,925 steps).
            'average.ema_warmup': True,
        },
        runs={
            'tiniest': {},  # 97,530: the recipe alone
            'wide_64_112': {'model_args.widths': (64, 112),  # 178,002
                            'model_args.hidden': (64, 112)},
            'deep_64_96': {'model_args.widths': (64, 96),  # 190,506
                           'model_args.hidden': (64, 96), 'model_args.depths': (4, 4)},
            'gated_x2': {'model_args.hidden': (96, 160)},  # 176,634: twice the gated width
        },
        seeds=[0, 1, 2],
    )
