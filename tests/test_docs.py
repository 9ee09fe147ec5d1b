"""The tests the README and docs/ name as evidence exist, under those names."""
import glob
import os
import re

from conftest import REPO

# `test_file.py::test_name`, or a name cut short with `...` (a prefix) in the speed tables.
CITED = re.compile(r'(test_\w+\.py)::(\w*)(\.\.\.)?')


def cited_tests():
    """Where README.md and docs/ name a test (but docs/speed.md: dated records of past runs,
    whose tests may since have been merged or renamed)."""
    docs = [p for p in glob.glob(os.path.join(REPO, 'docs', '*.md'))
            if not p.endswith('speed.md')]
    for path in [os.path.join(REPO, 'README.md'), *docs]:
        with open(path) as f:
            for match in CITED.finditer(f.read()):
                yield os.path.relpath(path, REPO), *match.groups()


def test_every_cited_test_exists():
    cited = list(cited_tests())
    assert len(cited) > 20  # docs/robustness.md's table alone names more
    missing = []
    for doc, file, name, cut in cited:
        path = os.path.join(REPO, 'tests', file)
        names = re.findall(r'^def (test_\w+)\(', open(path).read(), re.M) if os.path.exists(
            path) else []
        if not any(n.startswith(name) if cut else n == name for n in names):
            missing.append(f'{doc}: {file}::{name}{cut or ""}')
    assert not missing, missing


def test_the_readmes_predict_commands_name_files_a_fresh_clone_has():
    """A newcomer copies those of the shipped model before any dataset or run exists: the
    model and the images it predicts on are in the clone."""
    commands = []
    for doc in ['README.md', 'pretrained/default/README.md', 'pretrained/samples/README.md']:
        with open(os.path.join(REPO, doc)) as f:
            commands += [line.split('main.py', 1)[1].split() for line in f
                         if '--mode=predict' in line and 'pretrained/default' in line]
    assert len(commands) >= 4
    for words in commands:
        paths = [w.split('=', 1)[-1] for w in words if '/' in w and not w.endswith('/')]
        assert paths, words
        for path in paths:
            assert glob.glob(os.path.join(REPO, path)), f'{" ".join(words)}: no {path}'


def test_every_config_flag_a_user_is_shown_names_a_field():
    """`--config.<key>` and sweep `--override <key>=` in the README, the configs' run lines,
    the shipped model's README, launch.sh and the package's own messages name a field of
    configs/default.py (model_args: the model's); docs/ keeps dated records and is left out."""
    from flax import traverse_util

    from configs import default
    fields = set(traverse_util.flatten_dict(default.get_config().to_dict(), sep='.',
                                            is_leaf=lambda path, _: path == ('model_args',)))
    paths = ['README.md', 'launch.sh', *glob.glob('pretrained/*/README.md', root_dir=REPO),
             *glob.glob('configs/**/*.py', root_dir=REPO, recursive=True),
             *glob.glob('flax_cifar/**/*.py', root_dir=REPO, recursive=True)]
    shown = []
    for path in paths:
        with open(os.path.join(REPO, path)) as f:
            text = f.read()
        shown += [(path, key) for key in re.findall(r'--config\.([a-z_][\w.]*\w)', text)
                  + re.findall(r'--override ([a-z_][\w.]*)=', text)]
    assert len(shown) > 20
    sections = {field.rpartition('.')[0] for field in fields}  # '--config.distributed.*'
    unknown = [f'{path}: {key}' for path, key in shown
               if key not in fields | sections and not key.startswith('model_args.')]
    assert not unknown, unknown


# A config file and the `--config.<key>=<value>` flags after it, as a shown command has them
# (a line may continue with a backslash).
COMMAND = re.compile(r'(configs/[\w/]+\.py)((?:[ \t]+(?:\\\n[ \t]*)?--config\.[\w.]+=[^\s`]+)+)')


def test_every_config_a_user_is_shown_passes_the_config_checks(tmp_path):
    """Each config file with overrides in the README, the configs' run lines and the shipped
    model's README, parsed as main.py parses it, passes validate_config: a combination the
    checks refuse (Muon's rate without its optimizer) fails here, not on a user's machine."""
    import shlex

    from absl import flags
    from ml_collections import config_flags

    from flax_cifar import validation
    from flax_cifar.errors import InputError
    paths = ['README.md', *glob.glob('pretrained/*/README.md', root_dir=REPO),
             *glob.glob('configs/**/*.py', root_dir=REPO, recursive=True)]
    shown = []
    for path in paths:
        with open(os.path.join(REPO, path)) as f:
            shown += [(path, m.group(1), shlex.split(m.group(2).replace('\\\n', ' ')))
                      for m in COMMAND.finditer(f.read())]
    assert len(shown) > 10
    refused = []
    for path, config_file, overrides in shown:
        # The placeholder dataset paths name a folder that exists here.
        overrides = [re.sub(r'=(folder|arrays):/path/to/\S+', rf'=\1:{tmp_path}', flag)
                     for flag in overrides]
        argv = ['main.py', '--config', os.path.join(REPO, config_file), *overrides]
        flag_values = flags.FlagValues()  # the overrides' flags are made from argv
        config_flags.DEFINE_config_file('config', None, flag_values=flag_values,
                                        lock_config=True, sys_argv=argv)
        flag_values(argv)
        try:
            validation.validate_config(flag_values.config, num_devices=1)
        except InputError as e:
            refused.append(f'{path}: {config_file} {" ".join(overrides)}: {e}')
    assert not refused, refused
