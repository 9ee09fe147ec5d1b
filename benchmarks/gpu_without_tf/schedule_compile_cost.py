"""Ad-hoc: the first eager call of the optax schedule vs a jitted one (README, Speed)."""
import sys, time; sys.path.insert(0, '.')  # run from the repository root
import jax
from configs import default
from flax_cifar import optim
c = default.get_config()
f = optim.create_learning_rate_fn(c, 5850)
for i in range(3):
    t=time.perf_counter(); v=float(f(100+i)); print('eager call', i, round((time.perf_counter()-t)*1e3,1), 'ms')
g = jax.jit(f)
for i in range(3):
    t=time.perf_counter(); v=float(g(100+i)); print('jit call', i, round((time.perf_counter()-t)*1e3,1), 'ms')
