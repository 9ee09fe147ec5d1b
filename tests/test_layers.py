"""The package's layers (docs/design.md): every module imports only from its own package or
from a layer below, so there is no import circle and the run sits on its foundation."""
import ast
import graphlib
import pathlib

from conftest import REPO

# Lowest first; a module's layer is that of its longest listed prefix.
LAYERS = [
    ('storage', 'streams', 'errors', 'xla_options', 'allocator', 'parallel'),
    ('models', 'data'),
    ('state',),
    ('workdir', 'plots'),
    ('validation',),
    ('evaluation',),
    ('training', 'exported'),
    ('export', 'sweep', 'ship'),
]
PACKAGE = pathlib.Path(REPO) / 'flax_cifar'


def layer_of(module: str) -> int:
    top = module.split('.')[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def imports_of(path: pathlib.Path) -> set[str]:
    """The flax_cifar modules a file imports, top-level or inside functions, without the
    'flax_cifar.' prefix: 'from flax_cifar.workdir import lock' gives 'workdir.lock'."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('flax_cifar'):
            base = node.module.removeprefix('flax_cifar').lstrip('.')
            found.update(f'{base}.{a.name}'.lstrip('.') if not base or base in (
                'models', 'data', 'state', 'workdir', 'training', 'evaluation', 'parallel')
                else base for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix('flax_cifar.') for a in node.names
                         if a.name.startswith('flax_cifar.'))
    return found


def modules():
    for path in sorted(PACKAGE.rglob('*.py')):
        name = '.'.join(path.relative_to(PACKAGE).with_suffix('').parts)
        if name != '__init__':
            yield name.removesuffix('.__init__'), path


def test_every_module_has_a_layer():
    for name, _ in modules():
        assert layer_of(name) >= 0, name


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f'{name} -> {target}' for name, path in modules() for target in imports_of(path)
              if target.split('.')[0] != name.split('.')[0] and layer_of(target) > layer_of(name)]
    assert not upward, upward


def test_no_import_circle():
    graph = {name: imports_of(path) for name, path in modules()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the circle


def test_layers_catch_an_import_back_up(tmp_path):
    """The check itself: a foundation module importing the run is found."""
    probe = tmp_path / 'probe.py'
    probe.write_text('from flax_cifar.training import train\nfrom flax_cifar import storage\n')
    assert imports_of(probe) == {'training.train', 'storage'}
    assert layer_of('training.train') > layer_of('workdir.checkpointing')
