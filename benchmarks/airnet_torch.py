"""AirNet's PyTorch twin: the default network (192,544 parameters, layer for layer) and its
training step, for the real-epoch throughput ratio against JAX (`benchmarks/twin.py`).

  python benchmarks/airnet_torch.py [--arrays /path/to/cifar10-arrays] [--compile] [--json]

Trains as `configs/default.py` does, one step a call: the batch gathered from uint8 images held
in memory, alternating flips, 2-pixel reflected translation and normalization on the batch,
GELU (tanh form, as Flax's), BatchNorm without scale and its bias at 64x the learning rate,
Nesterov SGD with L2 on the kernels, label smoothing 0.2, the triangle schedule, Lookahead
every 5 steps; channels-last tensors. Prints images/s over `--steps` steps of an epoch after
`--warmup` steps (`--compile`: the model under `torch.compile`, its compile in the warm-up).
PyTorch is no dependency of flax_cifar: install it beside (`pip install torch numpy`).
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# configs/default.py's values.
BATCH, LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 1024, 1.5, 0.85, 0.00133
BIAS_LR_MULT, LABEL_SMOOTHING, EPOCHS, WARMUP_FRACTION = 64.0, 0.2, 15, 0.23
LOOKAHEAD_EVERY, LOOKAHEAD_DECAY = 5, 0.95
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
PARAMETERS = 192_544  # the Flax model's (tests/with_torch checks both against each other)


class Bias(nn.Module):
    """A per-channel bias: BatchNorm's shift without its scale (Flax's use_scale=False)."""

    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return x + self.bias


def separable(cin, cout, dilation):
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin,
                                   bias=False),
                         nn.Conv2d(cin, cout, 1, bias=False))


class AirNetTwin(nn.Module):
    """configs/default.py's AirNet: a frozen 2x2 whitening conv (24), then blocks 64, 192, 256
    of conv -> 2x2 max pool -> BN -> GELU -> conv (dilated 2, 2, 1) -> BN -> GELU; block 1's
    first conv dense, every other separable; a global max and a bias-free head scaled by 1/9."""

    def __init__(self, widths=(64, 192, 256), dilations=(2, 2, 1)):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, bias=False)
        self.whiten.weight.requires_grad_(False)  # set from patch statistics, never trained
        layers, cin = [], 24
        for b, (cout, dilation) in enumerate(zip(widths, dilations)):
            first = nn.Conv2d(cin, cout, 3, padding=1, bias=False) if b == 0 else separable(
                cin, cout, 1)
            layers += [first, nn.MaxPool2d(2), *self.norm(cout),
                       separable(cout, cout, dilation), *self.norm(cout)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 10, bias=False)

    @staticmethod
    def norm(channels):
        # Flax's BatchNorm momentum 0.6 is the running statistics' decay: PyTorch's 0.4.
        return [nn.BatchNorm2d(channels, eps=1e-5, momentum=0.4, affine=False),
                Bias(channels), nn.GELU(approximate='tanh')]

    def forward(self, x):
        x = self.layers(F.gelu(self.whiten(x), approximate='tanh'))
        return self.head(torch.amax(x, dim=(2, 3))) / 9


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def triangle(step: int, total: int) -> float:
    """configs/default.py's schedule: up from lr / 5 to lr, then down to lr / 5 * 0.07."""
    warmup, start = max(1, int(WARMUP_FRACTION * total)), LEARNING_RATE / 5
    if step < warmup:
        return start + (LEARNING_RATE - start) * step / warmup
    return LEARNING_RATE + (start * 0.07 - LEARNING_RATE) * (step - warmup) / (total - warmup)


def crop(padded: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Each image's 32x32 window at its own shift (airbench's masked copies, for pad <= 2)."""
    out = torch.empty_like(padded[:, :, pad:-pad, pad:-pad])
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            mask = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            out[mask] = padded[mask, :, pad + dy:pad + dy + 32, pad + dx:pad + dx + 32]
    return out


class Trainer:
    """The real epoch's step: gather, augment and normalize a batch, one SGD step, Lookahead."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, compile_model: bool):
        torch.manual_seed(0)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(
            memory_format=torch.channels_last)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.flipped = torch.rand(len(images)) < 0.5  # the fixed half mirrored in even epochs
        self.mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD).view(1, 3, 1, 1) * 255
        self.model = AirNetTwin().to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if compile_model else self.model
        biases = [p for n, p in self.model.named_parameters() if n.endswith('bias')]
        kernels = [p for n, p in self.model.named_parameters()
                   if p.requires_grad and not n.endswith('bias')]
        self.optimizer = torch.optim.SGD(
            [dict(params=kernels, weight_decay=WEIGHT_DECAY, lr_mult=1.0),
             dict(params=biases, weight_decay=0.0, lr_mult=BIAS_LR_MULT)],
            lr=LEARNING_RATE, momentum=MOMENTUM, nesterov=True)
        self.slow = [p.detach().clone() for p in self.model.parameters()]
        self.steps_per_epoch = len(images) // BATCH
        self.total = EPOCHS * self.steps_per_epoch
        self.order, self.step = None, 0

    def batch(self):
        epoch, index = divmod(self.step, self.steps_per_epoch)
        if index == 0:
            self.order = torch.randperm(len(self.images))
        ids = self.order[index * BATCH:(index + 1) * BATCH]
        x = self.images[ids].float()
        flip = self.flipped[ids] ^ bool(epoch % 2)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        x = crop(F.pad(x, (2,) * 4, mode='reflect'), torch.randint(-2, 3, (BATCH, 2)), 2)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last), \
            self.labels[ids]

    def train_step(self):
        images, labels = self.batch()
        for group in self.optimizer.param_groups:
            group['lr'] = triangle(self.step, self.total) * group['lr_mult']
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.forward(images), labels, label_smoothing=LABEL_SMOOTHING)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        if self.step % LOOKAHEAD_EVERY == 0:
            with torch.no_grad():
                for slow, fast in zip(self.slow, self.model.parameters()):
                    slow.lerp_(fast, 1 - LOOKAHEAD_DECAY)
                    fast.copy_(slow)
        return loss.detach()


def load(arrays: str | None):
    if arrays:
        return (np.load(os.path.join(arrays, 'train_images.npy'), mmap_mode='r')[:],
                np.load(os.path.join(arrays, 'train_labels.npy')))
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, 50_000).astype(np.int32))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arrays', help='decoded arrays (python -m flax_cifar.data.to_arrays); '
                        'random images of the same shape without')
    parser.add_argument('--compile', action='store_true', help='torch.compile the model')
    parser.add_argument('--warmup', type=int, default=4, help='untimed steps first')
    parser.add_argument('--steps', type=int, default=-1, help='timed steps (-1: an epoch)')
    parser.add_argument('--json', action='store_true', help='one JSON object')
    args = parser.parse_args()
    trainer = Trainer(*load(args.arrays), compile_model=args.compile)
    count = parameter_count(trainer.model)
    if count != PARAMETERS:
        raise SystemExit(f'error: the twin has {count:,} parameters, AirNet {PARAMETERS:,}')
    for _ in range(args.warmup):
        trainer.train_step()
    steps = trainer.steps_per_epoch if args.steps < 0 else args.steps
    start = time.perf_counter()
    for _ in range(steps):
        loss = trainer.train_step()
    loss.item()
    seconds = time.perf_counter() - start
    result = {'framework': 'torch', 'mode': 'compile' if args.compile else 'eager',
              'torch': torch.__version__, 'threads': torch.get_num_threads(),
              'parameters': count, 'batch_size': BATCH, 'steps': steps,
              'epoch_images_per_s': round(steps * BATCH / seconds, 1),
              'loss': round(float(loss), 4)}
    print(json.dumps(result) if args.json else
          '\n'.join(f'{k:20s} {v}' for k, v in result.items()))


if __name__ == '__main__':
    main()
