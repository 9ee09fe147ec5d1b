"""flax_cifar: small dilated, depthwise-separable CIFAR-10 networks in JAX/Flax."""
import os

# TensorFlow only decodes images here; its start-up notices (oneDNN, C++ INFO) are noise.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

from flax_cifar import storage as _storage  # noqa: E402

_storage.configure_gcs()  # before anything opens a gs:// path
