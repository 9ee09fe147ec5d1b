"""XLA compiler options a config asks for, per backend, and the compilation cache."""
import os

import jax

from flax_cifar import storage

# On CPU, XLA hands individual dots, individual convolutions and reductions to YNNPACK by
# default (jax 0.10 to 0.12). This list is that default without the convolutions, which XLA's
# own kernels then compute. It replaces the whole list: should a later XLA add types to its
# default, revisit this (tests/test_train.py checks what the list leaves in YNNPACK).
CPU_WITHOUT_YNNPACK_CONVOLUTIONS = {'xla_cpu_experimental_ynn_fusion_type': ','.join([
    'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT', 'LIBRARY_FUSION_TYPE_REDUCE'])}


def training_options(train) -> dict:
    """Options for the training step's programs: XLA's own convolution kernels on CPU where
    config.train.cpu_ynnpack_convolutions is False (evaluation runs as fast either way)."""
    if jax.default_backend() == 'cpu' and not train.cpu_ynnpack_convolutions:
        return dict(CPU_WITHOUT_YNNPACK_CONVOLUTIONS)
    return {}


def rejected(options: dict) -> str | None:
    """Why this jaxlib's XLA refuses `options` (the first line of its error), or None."""
    if not options:
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(1.0).compile()
    except Exception as error:  # XLA's error type moved between jax versions
        return str(error).splitlines()[0]
    return None


def use_compilation_cache(every_program: bool = False):
    """Keeps XLA's programs on disk ($JAX_COMPILATION_CACHE_DIR, else <cache dir>/jax), so a
    restart skips compiling, a large part of a CPU run's start (docs/speed.md). JAX keeps only
    programs that took a second or more to compile; `every_program` keeps all (predict and
    evaluate compile a dozen small ones, each under a second), unless the user chose."""
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update('jax_compilation_cache_dir',
                          os.path.join(storage.default_cache_dir(), 'jax'))
    if every_program and 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
        jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
