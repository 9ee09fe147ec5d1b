"""Train and evaluate a CIFAR-10 network: `python main.py --config configs/default.py`."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TF's C++ start-up chatter
from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None,
                    'Checkpoints and metrics go here; a run resumes from it. '
                    'Default: workdirs/<config file name>.')
config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                lock_config=True)
flags.mark_flags_as_required(['config'])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    if not FLAGS['verbosity'].present:
        # The console is for the progress bars and test lines; Orbax's INFO chatter: -v 0.
        logging.set_verbosity(logging.WARNING)
    import tensorflow as tf
    tf.config.set_visible_devices([], 'GPU')  # TF only reads files; the accelerators are JAX's.
    from flax_cifar import train

    config_name = os.path.splitext(os.path.basename(FLAGS['config'].config_filename))[0]
    workdir = FLAGS.workdir or os.path.join('workdirs', config_name)
    logging.info('workdir: %s', workdir)
    train.train_and_evaluate(FLAGS.config, workdir)


if __name__ == '__main__':
    app.run(main)
