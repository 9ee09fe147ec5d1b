import csv
import os

import pytest

from conftest import REPO, SWEEP_FILES, rgb_arrays
from flax_cifar import sweep, validation

SWEEP = '''
def get_sweep():
    return dict(
        config='configs/smoke.py',
        overrides={'train.epochs': 1},
        runs={'narrow': {}, 'wider': {'model_args.stage_features': (16, 16)}},
        seeds=[0],
    )
'''


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / 'sweep.py'
    path.write_text(SWEEP)
    return str(path)


def test_grid_names_each_combination_and_keeps_the_common_overrides():
    runs = sweep.expand({'config': 'c.py', 'overrides': {'train.epochs': 2},
                         'grid': {'optim.learning_rate': [0.1, 0.2],
                                  'model_args.depthwise': [True]}})
    assert runs == [('learning_rate=0.1,depthwise=True', 'c.py',
                     {'train.epochs': 2, 'optim.learning_rate': 0.1, 'model_args.depthwise': True}),
                    ('learning_rate=0.2,depthwise=True', 'c.py',
                     {'train.epochs': 2, 'optim.learning_rate': 0.2, 'model_args.depthwise': True})]
    assert sweep.parse_override('data.dataset=folder:/x') == ('data.dataset', 'folder:/x')
    assert sweep.parse_override('model_args.block_depths=(3,3)') == (
        'model_args.block_depths', (3, 3))


@pytest.mark.parametrize('sweep_path', SWEEP_FILES)
def test_every_shipped_sweep_builds_valid_configs(sweep_path):
    shipped = sweep.load_module(os.path.join(REPO, sweep_path))
    runs = sweep.expand(shipped.get_sweep())
    assert runs
    for _, config_file, overrides in runs:
        validation.validate_config(sweep.build_config(config_file, overrides), num_devices=1)


@pytest.mark.parametrize('malformed', [
    {'config': 'c.py', 'runs': {'x': {}}, 'grid': {'seed': [0]}},  # both
    {'config': 'c.py'},                                             # neither
])
def test_a_sweep_file_gives_runs_or_grid_exactly_once(malformed):
    with pytest.raises(SystemExit, match='gives `runs` or `grid`, exactly one'):
        sweep.expand(malformed)


def test_a_run_can_name_its_own_config_file():
    runs = sweep.expand({'config': 'a.py', 'overrides': {'train.epochs': 5},
                         'runs': {'x': {}, 'y': {'config': 'b.py', 'train.batch_size': 4}}})
    assert runs == [('x', 'a.py', {'train.epochs': 5}),
                    ('y', 'b.py', {'train.epochs': 5, 'train.batch_size': 4})]


def test_bad_override_key_is_named_before_anything_trains(tmp_path):
    path = tmp_path / 'bad.py'
    path.write_text("def get_sweep():\n    return dict(config='configs/smoke.py', "
                    "runs={'x': {'no_such_field': 1}})\n")
    with pytest.raises(SystemExit, match="sweep run 'x': override"):
        sweep.main([str(path), '--root', str(tmp_path / 'root')])
    assert not (tmp_path / 'root').exists()
    # A field named as before the config's sections: the message names its place now.
    with pytest.raises(SystemExit, match="override 'lookahead.every': now "
                                         "'average.lookahead.every'"):
        sweep.main([str(path), '--root', str(tmp_path / 'root'),
                    '--override', 'lookahead.every=3'])


@pytest.mark.slow
def test_sweep_trains_each_run_in_its_workdir_tabulates_and_skips_finished_runs(
        sweep_file, tmp_path, capsys):
    data = rgb_arrays(tmp_path / 'data', train_per_class=8, test_per_class=4)
    root = tmp_path / 'root'
    args = [sweep_file, '--root', str(root), '--parallel', '2',
            '--override', f'data.dataset={data}']
    sweep.main(args)
    for name in ('narrow_s0', 'wider_s0'):
        assert (root / name / 'metrics.jsonl').exists() and (root / name / sweep.DONE).exists()
    with open(root / 'results.csv') as f:
        rows = {row['name']: row for row in csv.DictReader(f)}
    assert rows['narrow']['seeds_done'] == rows['wider']['seeds_done'] == '1/1'
    assert int(rows['wider']['params']) > int(rows['narrow']['params'])
    assert 0 <= float(rows['narrow']['mean_accuracy']) <= 100
    assert (root / 'frontier.png').stat().st_size > 0
    assert '| narrow |' in (root / 'results.md').read_text()
    log_size = os.path.getsize(root / 'narrow_s0.log')
    capsys.readouterr()
    sweep.main(args)  # everything finished: nothing trains again
    assert 'start ' not in capsys.readouterr().out
    assert os.path.getsize(root / 'narrow_s0.log') == log_size
