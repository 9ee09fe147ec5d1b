"""Train, evaluate or predict with a CIFAR-10 network.

  python main.py --config configs/default.py                       # train (resumes)
  python main.py --mode=evaluate --workdir workdirs/default        # test a checkpoint
  python main.py --mode=predict --workdir workdirs/default a.png b.jpg
  python main.py --mode=export --workdir workdirs/default          # LiteRT and ONNX models
  python main.py --mode=predict --exported workdirs/default/export/model_int8.tflite a.png
"""
import os
import re
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from flax_cifar import allocator

FLAGS = flags.FLAGS
flags.DEFINE_enum('mode', 'train', ['train', 'evaluate', 'predict', 'export'],
                  'train (resuming from the workdir), evaluate a checkpoint on the test split, '
                  'predict the image files given as arguments, or export a checkpoint as '
                  'LiteRT (float32, int8) and ONNX models, measured on the test split.')
flags.DEFINE_string('exported', None,
                    'predict with this exported model (.tflite or .onnx) instead of a '
                    'checkpoint.')
flags.DEFINE_string('workdir', None,
                    'Checkpoints and metrics go here; a run resumes from it. '
                    'Default: workdirs/<config file name>.')
flags.DEFINE_bool('one_view', False,
                  'export: models of one view per image (a fraction of the latency) instead of '
                  "the config's test-time views averaged, as evaluate and predict do.")
flags.DEFINE_integer('precise_bn', 0,
                     'evaluate: recompute the BatchNorm statistics of the evaluated weights over '
                     'this many training batches (PreciseBN) and report both accuracies; 0: the '
                     'stored statistics.', lower_bound=0)
flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'],
                  'The checkpoint that evaluate and predict use: best test accuracy or latest.')
config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                lock_config=True)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, each misuse of the command line ended with one line, not a traceback."""
    try:
        argv = FLAGS(argv)
        if FLAGS.config is not None:
            FLAGS.config.get('seed')  # a config file that failed to load raises here
    except flags.Error as e:
        sys.exit(f'error: {e}')
    except (AttributeError, KeyError) as e:  # --config.<key> names no field (or section)
        sys.exit(f'error: {unknown_field_message(str(e), argv)}')
    except (OSError, ValueError, TypeError, SyntaxError, ImportError) as e:
        sys.exit(f'error: --config: {type(e).__name__}: {str(e).strip().splitlines()[-1].strip()}')
    problem = usage_problem(argv)
    if problem:
        sys.exit(f'error: {problem}')
    return argv


def unknown_field_message(error: str, argv: list[str]) -> str:
    """'--config.<key>: no such field (did you mean ...)' from ml_collections' AttributeError."""
    from flax_cifar.workdir import compat
    name = re.search(r"[A-Za-z_]\w*", error).group()
    keys = [arg[len('--config.'):].split('=')[0] for arg in argv if arg.startswith('--config.')]
    key = next((k for k in keys if name in k.split('.')), name)
    moved = compat.moved_key(key)
    if moved:
        return f'--config.{key}: the field is now --config.{moved}'
    suggestion = re.search(r'Did you mean "([^"]+)"', error)
    hint = f'; did you mean {suggestion.group(1)!r}?' if suggestion else ''
    return f'--config.{key}: the config has no such field{hint}'


def usage_problem(argv: list[str]) -> str | None:
    """What is wrong with the flags and arguments for --mode, if anything."""
    given = [name for name in ('config', 'workdir', 'exported', 'checkpoint', 'one_view',
                               'precise_bn') if FLAGS[name].present]
    allowed = {'train': {'config', 'workdir'},
               'evaluate': {'config', 'workdir', 'checkpoint', 'precise_bn'},
               'predict': {'config', 'workdir', 'checkpoint', 'exported'},
               'export': {'config', 'workdir', 'checkpoint', 'one_view'}}[FLAGS.mode]
    extra = [f'--{name}' for name in given if name not in allowed]
    if extra:
        return f'--mode={FLAGS.mode} does not take {", ".join(extra)}'
    if FLAGS.mode != 'predict' and len(argv) > 1:
        return f'--mode={FLAGS.mode} takes no arguments; got {argv[1:]}'
    if FLAGS.mode == 'train' and FLAGS.config is None:
        return '--config is needed to train, e.g. --config configs/default.py'
    if FLAGS.mode == 'predict' and len(argv) < 2:
        return '--mode=predict takes image files as arguments'
    if FLAGS.mode == 'predict' and FLAGS.exported and ({'config', 'workdir'} & set(given)):
        return '--exported predicts with the exported model alone; drop --config/--workdir'
    if not FLAGS.workdir and FLAGS.config is None and not FLAGS.exported:
        return f'--mode={FLAGS.mode} needs --workdir (or --config, for workdirs/<config name>)'
    return None


def workdir_for(config_flag) -> str:
    if FLAGS.workdir:
        return FLAGS.workdir
    name = os.path.splitext(os.path.basename(config_flag.config_filename))[0]
    return os.path.join('workdirs', name)


def main(argv):
    if not FLAGS['verbosity'].present:
        # The console is for the progress bars and test lines; Orbax's INFO chatter: -v 0.
        # Reading a checkpoint, its warnings say only that it is opened read-only.
        logging.set_verbosity(logging.WARNING if FLAGS.mode == 'train' else logging.ERROR)
    from flax_cifar import xla_options
    from flax_cifar.errors import InputError
    from flax_cifar.parallel import distributed

    xla_options.use_compilation_cache(every_program=FLAGS.mode in ('predict', 'evaluate'))
    if FLAGS.mode == 'train':
        distributed.maybe_initialize(FLAGS.config.distributed)  # before JAX touches any device
    try:
        dataset = FLAGS.config.data.dataset if FLAGS.config else None
        if FLAGS.mode == 'predict' and FLAGS.exported:
            from flax_cifar import exported
            predictions = exported.predict_files(FLAGS.exported, argv[1:])
        elif FLAGS.mode == 'predict':
            from flax_cifar.evaluation import inference
            predictions = inference.predict_files(workdir_for(FLAGS['config']), argv[1:],
                                                  FLAGS.checkpoint)
        elif FLAGS.mode == 'train':
            from flax_cifar.training import train
            train.train_and_evaluate(FLAGS.config, workdir_for(FLAGS['config']))
        elif FLAGS.mode == 'evaluate':
            from flax_cifar.evaluation import report
            report.evaluate_checkpoint(workdir_for(FLAGS['config']), FLAGS.checkpoint, dataset,
                                       FLAGS.precise_bn)
        else:
            from flax_cifar import export
            workdir = workdir_for(FLAGS['config'])
            print(export.format_report(export.export(workdir, FLAGS.checkpoint, dataset=dataset,
                                                     one_view=FLAGS.one_view)))
            print(f'Models and export.json: {os.path.join(workdir, "export")}')
        if FLAGS.mode == 'predict':
            for path, name, probability in predictions:
                print(f'{path}\t{name}\t{probability:.4f}')
    except (InputError, FloatingPointError) as e:
        _exit_job(f'error: {e}')
    except Exception:
        _exit_job(traceback.format_exc())


def _exit_job(message: str):
    """Exits with `message`. In a job of several processes, at once: a normal exit would
    wait minutes at JAX's shutdown barrier for processes that will never reach it."""
    import jax
    if jax.process_count() == 1:
        sys.exit(message)
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


if __name__ == '__main__':
    allocator.reexec()  # a malloc that keeps freed memory, set before JAX loads (its docstring)
    app.run(main, flags_parser=parse_flags)
