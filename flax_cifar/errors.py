"""Errors that mean "fix the input", reported as one line without a traceback."""


class InputError(ValueError):
    """A config field, data file, checkpoint or argument that cannot be used, named."""


def set_aside(path, target, why: str, name: str | None = None, move: bool = True) -> None:
    """Moves a damaged file or directory `path` to `target` (never deletes it) and warns,
    naming it (`name`, default the path), where it went and why, so the run can go on
    without it. move=False only warns (a process other than the one that moves)."""
    from absl import logging
    from etils import epath
    path, target = epath.Path(path), epath.Path(target)
    message = f'WARNING: {name or path} is damaged ({why}); moved to {target}'
    logging.warning(message)
    print(message, flush=True)
    if move:
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
