"""Orbax checkpoints in `<workdir>/checkpoints`, hardened for preemption and damage.

Each step holds two items: `state` (the TrainState) and `meta` (JSON: the architecture the
parameters belong to, the whole config, the class names, and the running sums of the
epoch in progress, so a mid-epoch resume reports the same epoch metrics).

Orbax writes each step into a temporary directory and renames it when complete, so a
killed save leaves no half step behind. What it does not cover, added here:
  * a finalized step that cannot be read (truncated, garbage or zero-length files, a
    missing item) is moved, never deleted, to `<workdir>/checkpoints_damaged/`, with a
    warning, and the next older step is tried. A machine crash can leave a renamed step
    whose files never reached the disk; Orbax itself reads each step's JSON when it opens
    the directory, so those are judged from their files first (`step_damage`);
  * a checkpoint written for another network is refused with one line naming the
    difference, and left as it is.
"""
import json
import time

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from flax_cifar import errors, storage
from flax_cifar.errors import InputError
from flax_cifar.state import train_state
from flax_cifar.workdir import compat

BEST_METRIC = 'test_accuracy'


ITEMS = ('state', 'meta')
COMMIT_MARKER = 'commit_success.txt'  # Orbax's mark of a finished save on Cloud Storage
# The JSON files of a step, which Orbax parses on opening the directory or restoring.
JSON_FILES = ('_CHECKPOINT_METADATA', 'metrics/metrics', 'meta/metadata', 'state/_METADATA',
              'state/_sharding')


class CheckpointMismatchError(InputError):
    pass


def _files(directory: epath.Path):
    for path in directory.iterdir():
        if path.is_dir():
            yield from _files(path)
        else:
            yield path


def step_damage(step_dir: epath.Path, items=ITEMS) -> str | None:
    """Why a finalized step cannot be restored, as far as its files alone show, or None:
    a missing item, an empty file, a JSON file that does not parse."""
    for item in items:
        if not (step_dir / item).is_dir():
            return f'its {item} item is missing'
    for path in _files(step_dir):
        if path.stat().length == 0:
            return f'{path.relative_to(step_dir)} is empty'
    for name in JSON_FILES:
        if (step_dir / name).exists():
            try:
                json.loads((step_dir / name).read_text())
            except (ValueError, UnicodeDecodeError):
                return f'{name} is not JSON'
    return None


class Checkpoints:
    """The latest `keep` steps plus the best by test accuracy, saved asynchronously."""

    def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
        self.workdir = epath.Path(workdir)  # local paths or gs://
        if not storage.is_remote(workdir):
            self.workdir = self.workdir.absolute()
        self.directory = self.workdir / 'checkpoints'
        policy = ocp.checkpoint_managers.AnyPreservationPolicy([
            ocp.checkpoint_managers.LatestN(n=keep),
            ocp.checkpoint_managers.BestN(get_metric_fn=lambda m: m[BEST_METRIC], n=1,
                                          keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=lambda m: m[BEST_METRIC], best_mode='max',
            create=not read_only, read_only=read_only, enable_async_checkpointing=not read_only)
        if read_only and not self.directory.is_dir():
            raise InputError(f'--workdir {workdir}: no checkpoints in {self.directory}')
        if self.directory.is_dir():
            self._set_aside_damaged_steps(read_only)
        if jax.process_count() > 1:  # the others open the directory once process 0 moved
            multihost_utils.sync_global_devices('checkpoints set aside')
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def _step_dirs(self) -> dict[int, epath.Path]:
        """Finalized steps. Locally Orbax writes under a temporary name and renames to the
        step; on Cloud Storage, which cannot rename, it writes the step in place and marks
        it done with COMMIT_MARKER last (an unmarked step is a save that never finished,
        which Orbax overwrites)."""
        remote = storage.is_remote(str(self.directory))
        return {int(p.name): p for p in self.directory.iterdir()
                if p.name.isdigit() and p.is_dir()
                and (not remote or (p / COMMIT_MARKER).exists())}

    def _set_aside_damaged_steps(self, read_only: bool):
        steps = self._step_dirs()
        # Checkpoints another program wrote have no meta item: refused at restore instead.
        ours = any((p / 'meta').is_dir() for p in steps.values())
        for step, step_dir in sorted(steps.items()):
            why = step_damage(step_dir, ITEMS if ours else ())
            if why and read_only:
                raise InputError(f'checkpoint step {step} in {self.directory} is damaged '
                                 f'({why}); a training run on this workdir sets it aside')
            if why:
                self._move_aside(step, why)

    def save(self, step: int, state, meta: dict, test_accuracy: float | None = None):
        metrics = None if test_accuracy is None else {BEST_METRIC: test_accuracy}
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), metrics=metrics)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def read_meta(self, step: int) -> dict:
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return compat.upgrade_meta(meta['meta'])

    def _check_architecture(self, step: int, meta: dict, architecture: dict):
        difference = architecture_mismatch(meta['architecture'], architecture)
        if difference:
            raise CheckpointMismatchError(
                f'checkpoint step {step} in {self.directory} belongs to another network '
                f'({difference}); use another --workdir or the checkpoint\'s config')

    def restore(self, step: int, state, architecture: dict) -> tuple:
        """(state, meta) of `step`; raises CheckpointMismatchError for another network."""
        step_dir = self.directory / str(step)
        if (step_dir / COMMIT_MARKER).exists() and not (step_dir / 'meta').is_dir():
            raise CheckpointMismatchError(
                f'checkpoint step {step} in {self.directory} has no meta item: another '
                f'program or an older flax_cifar wrote it; use another --workdir')
        meta = self.read_meta(step)
        self._check_architecture(step, meta, architecture)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return restored['state'], compat.upgrade_meta(restored['meta'])

    def restore_weights(self, step: int, state, architecture: dict):
        """`state` with the step, weights, batch statistics and their average of `step`: not
        the optimizer's state, which inference needs not (and an optimizer changed since may
        not read)."""
        meta = self.read_meta(step)
        self._check_architecture(step, meta, architecture)
        weights = {name: getattr(state, name) for name in ('step', 'params', 'batch_stats', 'ema')
                   if hasattr(state, name)}
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, weights)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                partial_restore=True)))['state']
        return state.replace(**restored)

    def restore_latest_intact(self, state, architecture: dict) -> tuple:
        """(state, meta) of the newest readable step, or (state, None) when there is none.

        Damaged steps on the way are moved aside, with a warning naming them.
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                return self.restore(step, state, architecture)
            except CheckpointMismatchError:
                raise
            except Exception as e:  # Orbax and TensorStore raise many kinds on bad bytes.
                self._set_aside(step, e)
        return state, None

    def _set_aside(self, step: int, error: Exception):
        first_line = str(error).splitlines()[0][:160] if str(error) else ''
        self._move_aside(step, f'{type(error).__name__}: {first_line}')
        self.manager.reload()

    def _move_aside(self, step: int, why: str):
        source = self.directory / str(step)
        target = self.workdir / 'checkpoints_damaged' / f'{step}.{int(time.time())}'
        errors.set_aside(source, target, why, name=f'checkpoint step {step} at {source}',
                         move=jax.process_index() == 0)

    def wait_until_finished(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


# The config fields that fix the parameter shapes a checkpoint holds.
ARCHITECTURE_FIELDS = ('model', 'model_args')


def architecture(config: ml_collections.ConfigDict) -> dict:
    """The part of `config` that fixes what a checkpoint holds, as plain JSON-able values:
    the parameter shapes, and whether a moving average of them is kept or the first conv
    frozen (compat.architecture_flags)."""
    plain = config.to_dict()
    fields = {name: plain[name] for name in ARCHITECTURE_FIELDS}
    fields.update(compat.architecture_flags(ema=train_state.keeps_average(config.average),
                                            whitened=bool(config.whitening.layer)))
    return compat.jsonable(fields)


def architecture_mismatch(saved: dict, current: dict) -> str | None:
    """'config.model_args.x: a in the checkpoint, b here' for the first difference, or None."""
    saved, current = compat.complete_architecture(saved), compat.complete_architecture(current)

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                name = (compat.moved_key(key) or key) if path == 'config' else key  # the flags
                found = walk(a.get(key, '<absent>'), b.get(key, '<absent>'), f'{path}.{name}')
                if found:
                    return found
            return None
        return None if a == b else f'{path}: {a!r} in the checkpoint, {b!r} here'
    return walk(saved, current, 'config')


def run_meta(config: ml_collections.ConfigDict, class_names: list[str]) -> dict:
    """What every checkpoint of a run carries beside its state."""
    return {'architecture': {**architecture(config), 'num_classes': len(class_names)},
            'config': config.to_dict(), 'class_names': class_names}


def contents(workdir: str) -> list[str]:
    """The workdir's entries, folders marked with '/'."""
    path = epath.Path(workdir)
    return sorted(p.name + ('/' if p.is_dir() else '') for p in path.iterdir()
                  if p.name != 'lock') if path.exists() else []
