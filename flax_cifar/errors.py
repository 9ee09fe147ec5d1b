"""Errors that mean "fix the input", reported as one line without a traceback."""
from flax_cifar import storage


class InputError(ValueError):
    """A config field, data file, checkpoint or argument that cannot be used, named."""


class ConfigError(InputError):
    """A config field that cannot be used, named with what it may be."""


def set_aside(path, target, why: str, name: str | None = None, move: bool = True) -> None:
    """Moves a damaged file or directory `path` to `target` (never deletes it) and says so,
    naming it (`name`, default the path), where it went and why, so the run can go on
    without it. move=False does nothing: a process other than the one that moves."""
    if not move:
        return
    print(f'WARNING: {name or path} is damaged ({why}); moved to {target}', flush=True)
    storage.move(str(path), str(target))
