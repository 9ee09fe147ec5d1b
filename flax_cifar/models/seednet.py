"""SeedNet: the seed write-up's network, layer for layer (185,936 parameters). Its "depthwise"
3x3 convs are dense, as the write-up's parameter counts show; `depthwise=True` makes them true
depthwise convs (`feature_group_count=in_features`)."""
import flax.linen as nn
import jax.numpy as jnp

from flax_cifar.models.layers import BatchNorm, Dropout, Network, Pool, SeparableConv

# The seed's table, one row per conv unit: (features, dilation, stride, padding, separable).
SEED_LAYERS = (
    (16, 1, 1, 0, False),  # 30x30
    (32, 2, 1, 0, True),   # 26x26
    (32, 2, 1, 0, True),   # 22x22
    (64, 2, 1, 0, True),   # 18x18
    (64, 2, 2, 0, True),   # 7x7
    (64, 1, 1, 1, True),   # 7x7
    (64, 1, 1, 1, True),   # 7x7
    (64, 1, 1, 1, False),  # 7x7
)


class SeedNet(Network):
    """The seed network: each unit is conv -> ReLU -> BatchNorm -> Dropout, as in the seed."""
    depthwise: bool = False
    dropout_rate: float = 0.05

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        for i, (features, dilation, stride, padding, separable) in enumerate(SEED_LAYERS):
            name = f'unit{i + 1}'
            if separable:
                x = SeparableConv(features, dilation, stride, padding, self.depthwise,
                                  self.dtype, self.depthwise_implementation,
                                  name=f'{name}_sepconv')(x)
            else:
                x = nn.Conv(features, (3, 3), strides=stride, padding=padding,
                            kernel_dilation=dilation, use_bias=False, dtype=self.dtype,
                            name=f'{name}_conv')(x)
            x = nn.relu(x)
            x = BatchNorm(use_running_average=not train, dtype=self.dtype, name=f'{name}_bn')(x)
            x = Dropout(self.dropout_rate, deterministic=not train, name=f'{name}_dropout')(x)
        x = Pool('avg', 7, 7, name='avgpool')(x)
        x = nn.Conv(self.num_classes, (1, 1), use_bias=False, dtype=self.dtype,
                    name='classifier')(x)
        return x.reshape(x.shape[0], -1).astype(jnp.float32)
