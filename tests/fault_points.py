"""main.py with a fault at a chosen point: `python tests/fault_points.py POINT:N ARGS...`.

POINT is where, N the how-manieth time it is reached in this process:
  kill_in_step      SIGKILL just after the N-th train dispatch, its steps still computing
  kill_in_save      SIGKILL just after the N-th checkpoint save began (written in the background)
  kill_at_finalize  SIGKILL when the N-th saved step is about to be renamed into place
  sigterm_in_step   SIGTERM (a preemption notice) just after the N-th train dispatch
  stop_in_step      SIGSTOP (the process freezes, holding its workdir) after the N-th dispatch
"""
import os
import re
import runpy
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
point, _, count = sys.argv[1].partition(':')
calls = 0


def reached(send=signal.SIGKILL):
    global calls
    calls += 1
    if calls == int(count):
        sys.stdout.flush()
        os.kill(os.getpid(), send)


def after_dispatch(make, send):
    def wrapped_make(*args, **kwargs):
        fn = make(*args, **kwargs)

        def dispatch(*fn_args):
            out = fn(*fn_args)  # asynchronous: the steps are still computing
            reached(send)
            return out
        return dispatch
    return wrapped_make


sys.path.insert(0, REPO)
if point.endswith('_in_step'):
    from flax_cifar.training import step as step_lib
    send = {'kill_in_step': signal.SIGKILL, 'sigterm_in_step': signal.SIGTERM,
            'stop_in_step': signal.SIGSTOP}[point]
    step_lib.make_train_fn = after_dispatch(step_lib.make_train_fn, send)
elif point == 'kill_in_save':
    from flax_cifar.workdir import checkpointing
    save = checkpointing.Checkpoints.save

    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        reached()
    checkpointing.Checkpoints.save = save_then_die
elif point == 'kill_at_finalize':
    rename = os.rename

    def rename_or_die(src, dst, *args, **kwargs):
        if re.fullmatch(r'\d+\.orbax-checkpoint-tmp.*', os.path.basename(str(src))):
            reached()
        return rename(src, dst, *args, **kwargs)
    os.rename = rename_or_die
else:
    sys.exit(f'unknown fault point {point!r}')
sys.argv = ['main.py', *sys.argv[2:]]
runpy.run_path(os.path.join(REPO, 'main.py'), run_name='__main__')
