"""flax_cifar: small dilated, depthwise-separable CIFAR-10 networks in JAX/Flax."""
from flax_cifar import storage as _storage

_storage.configure_gcs()  # before anything opens a gs:// path
