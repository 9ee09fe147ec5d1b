"""flax_cifar: small dilated, depthwise-separable CIFAR-10 networks in JAX/Flax."""
