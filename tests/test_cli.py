"""Every misuse of main.py and of the sweep command ends in one line naming the culprit and a
non-zero status, never a traceback. In process: parsing is what is tested, not start-up."""
import glob
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

CONFIG = os.path.join(REPO, 'configs', 'smoke.py')

MAIN_MISUSES = [  # (arguments, what the one line must say)
    (['--mode=evaluate'], '--mode=evaluate needs --workdir'),
    (['--mode=export'], '--mode=export needs --workdir'),
    (['--mode=predict', 'a.png'], '--mode=predict needs --workdir'),
    (['--mode=predict', '--workdir', 'w'], '--mode=predict takes image files'),
    (['--mode=train'], '--config is needed to train'),
    (['--mode=bogus'], "flag --mode=bogus: value should be one of"),
    (['--bogus_flag=1'], "Unknown command line flag 'bogus_flag'"),
    (['--config', CONFIG, 'a.png'], "--mode=train takes no arguments; got ['a.png']"),
    (['--config', CONFIG, '--exported', 'm.onnx'], '--mode=train does not take --exported'),
    (['--mode=evaluate', '--workdir', 'w', '--exported', 'm.onnx'],
     '--mode=evaluate does not take --exported'),
    (['--mode=predict', '--workdir', 'w', '--one_view', 'a.png'],
     '--mode=predict does not take --one_view'),
    (['--mode=predict', '--exported', 'm.onnx', '--workdir', 'w', 'a.png'],
     '--exported predicts with the exported model alone'),
    (['--config', CONFIG, '--config.train.batch_sise=3'],
     "--config.train.batch_sise: the config has no such field; did you mean 'batch_size'?"),
    (['--config', CONFIG, '--config.num_epochs=3'],  # a field from before the sections
     '--config.num_epochs: the field is now --config.train.epochs'),
    (['--config', CONFIG, '--config.augment.flipp=1'],
     "--config.augment.flipp: the config has no such field; did you mean 'flip'?"),
    (['--config', CONFIG, '--config.lookahead.every=3'],
     '--config.lookahead.every: the field is now --config.average.lookahead.every'),
    (['--config', CONFIG, '--config.average.lookahead.bogus=1'],
     '--config.average.lookahead.bogus: the config has no such field'),
    (['--config', CONFIG, '--config.train.batch_size=abc'], 'flag --config.train.batch_size=abc'),
    (['--config', 'configs/missing.py'], "No such file or directory: 'configs/missing.py'"),
]


def fresh_flags():
    """Unparsed flags, without the --config.<key> flags an earlier parse defined."""
    import main
    main.FLAGS.unparse_flags()
    for name in [n for n in main.FLAGS if n.startswith('config.')]:
        delattr(main.FLAGS, name)


@pytest.fixture
def parse(monkeypatch):
    """main.parse_flags on fresh flags; returns the SystemExit's message."""
    import main

    def run(args):
        fresh_flags()
        # ml_collections reads the --config.<key> overrides from sys.argv itself.
        monkeypatch.setattr('sys.argv', ['main.py', *args])
        with pytest.raises(SystemExit) as exit_info:
            main.parse_flags(['main.py', *args])
        return str(exit_info.value.code)
    yield run
    fresh_flags()


@pytest.mark.parametrize('args,expected', MAIN_MISUSES, ids=[' '.join(a) for a, _ in MAIN_MISUSES])
def test_main_misuse_is_one_line(parse, args, expected):
    message = parse(args)
    assert message.startswith('error: ') and '\n' not in message, message
    assert expected in message


def test_a_config_file_with_a_syntax_error_is_named(parse, tmp_path):
    bad = tmp_path / 'bad_config.py'
    bad.write_text('def get_config(:\n')
    message = parse(['--config', str(bad)])
    assert message.startswith('error: --config: SyntaxError') and 'bad_config.py' in message


def test_good_flags_parse(parse, monkeypatch):
    import main
    fresh_flags()
    argv = ['main.py', '--config', CONFIG, '--config.train.batch_size=16']
    monkeypatch.setattr('sys.argv', argv)
    assert main.parse_flags(argv) == ['main.py']
    assert main.FLAGS.config.train.batch_size == 16


SWEEP_MISUSES = [
    ([], 'the following arguments are required: sweep_file, --root'),
    (['configs/sweeps/search.py'], 'required: --root'),
    (['missing_sweep.py', '--root', 'r'], 'sweep file missing_sweep.py: no such file'),
    (['configs/smoke.py', '--root', 'r'], "has no attribute 'get_sweep'"),
    (['configs/sweeps/search.py', '--root', 'r', '--parallel', 'x'],
     "argument --parallel: invalid int value: 'x'"),
    (['configs/sweeps/search.py', '--root', 'r', '--override', 'no_equals'],
     "--override 'no_equals' is not KEY=VALUE"),
    (['configs/sweeps/search.py', '--root', 'r', '--override', 'bogus_key=1'],
     "'bogus_key': configs/"),
    (['configs/sweeps/search.py', '--root', 'r', '--parallel', '2', '--gpus', '0'],
     '--gpus names 1 GPUs for --parallel=2'),
]


@pytest.mark.parametrize('args,expected', SWEEP_MISUSES,
                         ids=[' '.join(a) for a, _ in SWEEP_MISUSES])
def test_sweep_misuse_is_one_line(args, expected, tmp_path, monkeypatch):
    from flax_cifar import sweep
    monkeypatch.chdir(REPO)
    args = [str(tmp_path / a) if a == 'r' else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(args)
    message = str(exit_info.value.code)
    assert message.startswith('error: ') and '\n' not in message, message
    assert expected in message
    assert not os.listdir(tmp_path), 'a misused sweep wrote nothing'


def commands_printed() -> set[str]:
    """Every `python -m flax_cifar...` command the README, the docs or the code prints."""
    found = set()
    for pattern in ('README.md', 'docs/*.md', 'flax_cifar/**/*.py', 'main.py', 'configs/**/*.py'):
        for path in glob.glob(os.path.join(REPO, pattern), recursive=True):
            with open(path) as f:
                found |= set(re.findall(r'python -m (flax_cifar(?:\.\w+)+)', f.read()))
    return found - {'flax_cifar.arrays'}  # docs/design.md's table of old names


def test_every_printed_command_answers_help_with_its_usage():
    commands = commands_printed()
    assert {'flax_cifar.sweep', 'flax_cifar.data.to_arrays', 'flax_cifar.plots',
            'flax_cifar.ship'} <= commands
    for module in sorted(commands):
        result = subprocess.run([sys.executable, '-m', module, '--help'], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (module, result.stderr[-500:])
        assert result.stdout.startswith(f'usage: python -m {module} '), (module, result.stdout)


@pytest.mark.parametrize('every_program, users, expected', [
    (False, None, 1.0),   # training: JAX's own threshold, a second of compiling
    (True, None, 0.0),    # predict and evaluate: their dozen small programs kept too
    (True, '2.5', 2.5),   # the user's choice kept
])
def test_the_compilation_cache_keeps_small_programs_where_asked(every_program, users,
                                                                expected, tmp_path):
    env = {**os.environ, 'XDG_CACHE_HOME': str(tmp_path), 'JAX_PLATFORMS': 'cpu'}
    env.pop('JAX_COMPILATION_CACHE_DIR', None)
    env.pop('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', None)
    if users:
        env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = users
    code = (f'import jax; from flax_cifar import xla_options; '
            f'xla_options.use_compilation_cache({every_program}); '
            f'print(jax.config.jax_persistent_cache_min_compile_time_secs, '
            f'jax.config.jax_compilation_cache_dir)')
    out = subprocess.run([sys.executable, '-c', code], env=env, cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split()
    assert float(out[0]) == expected
    assert out[1] == os.path.join(str(tmp_path), 'flax_cifar', 'jax')
