"""The output folder of a training run: locked while a run uses it, replaced only safely.

:class:`RunFolder` is what ``rvos train`` wraps around the Trainer:

* before anything else, ``check()`` refuses a path that is a file or cannot be written;
* entering takes a lock file ``.rvos.lock`` (holder's pid, host and start time), so a second
  run on the same folder is refused; a lock left by a dead process on this host is stale and
  taken over (with a warning);
* ``overwrite`` is a transaction: the previous run's files move, complete, into the visible
  folder ``previous-run/`` inside the run folder; it is deleted only once the new run has
  written its first complete checkpoint (``last/``), and put back if the new run fails before.
  A run killed before that leaves it there: a second ``overwrite`` keeps it (the original run,
  not the interrupted one), and :meth:`RunFolder.restore_previous` (``rvos train --out RUN
  --restore-previous``) puts it back. Every message names where the previous run is;
* moves interrupted by a kill are finished on the next start (no file is lost between the
  run folder and ``previous-run/``), and interrupted checkpoint saves are repaired
  (:func:`rvoslib._io.recover_directory`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from rvoslib._io import recover_directory

__all__ = ["LOCK_FILE", "PREVIOUS", "RUN_FILES", "RunFolder", "RunLockedError"]

LOCK_FILE = ".rvos.lock"
#: Where ``overwrite`` keeps the previous run until the new one has a complete checkpoint.
PREVIOUS = "previous-run"
_LEGACY_PREVIOUS = ".previous-run"  # earlier versions (hidden; taken over as PREVIOUS)
_MOVING = ".previous-run.moving"  # being moved aside (its files are still the current run's)
_RESTORING = ".previous-run.restoring"  # being put back
_DELETING = ".previous-run.deleting"  # being deleted (the new run has its checkpoint)
#: The files and folders a run writes (what ``overwrite`` replaces).
RUN_FILES = (
    "last",
    "best",
    "history.jsonl",
    "metrics.csv",
    "curves.png",
    "metrics.json",
    "overlays",
    "recipe.yaml",
    "tensorboard",
)
#: A complete checkpoint (CONFIG_FILE, WEIGHTS_FILE, TRAINING_STATE_FILE; not imported, to
#: keep this module free of torch).
_CHECKPOINT_FILES = ("config.json", "model.safetensors", "training_state.pt")


def _to_stderr(message: str) -> None:
    print(f"rvos train: {message}", file=sys.stderr)


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock."""


class RunFolder:
    """Lock, check and safely replace a run's output folder.

    Args:
        path: The output folder.
        resume: The run continues the one in ``path`` (its files are kept).
        overwrite: Replace a finished run in ``path`` (kept in ``path/previous-run`` until the
            new run's first complete checkpoint).
        notify: Receives the messages about the previous run (default: printed to stderr).

    Example:
        >>> import tempfile
        >>> with RunFolder(tempfile.mkdtemp()) as folder:
        ...     (folder.path / LOCK_FILE).is_file()
        True
    """

    def __init__(
        self,
        path: str | os.PathLike,
        resume: bool = False,
        overwrite: bool = False,
        notify: Callable[[str], None] | None = None,
    ):
        self.path = Path(path)
        self.resume, self.overwrite = resume, overwrite
        self.notify = notify or _to_stderr
        self._previous: Path | None = None
        self._started = False
        self._locked = False

    # ---------------------------------------------------------------- checks (no side effect)
    @property
    def previous(self) -> Path:
        """Where the run an ``overwrite`` replaces waits: ``path/previous-run``."""
        return self.path / PREVIOUS

    def existing(self) -> list[str]:
        """The run files already in the folder (or half moved aside by a killed overwrite)."""
        moving = [self.path / _MOVING, self.path / _RESTORING]
        return [
            name
            for name in RUN_FILES
            if (self.path / name).exists() or any((m / name).exists() for m in moving)
        ]

    def pending_previous(self) -> Path | None:
        """The folder holding a previous run left by an interrupted overwrite, or ``None``."""
        for name in (PREVIOUS, _RESTORING, _LEGACY_PREVIOUS):
            if (self.path / name).is_dir():
                return self.path / name
        return None

    def has_checkpoint(self) -> bool:
        """Whether ``path/last`` is a complete checkpoint."""
        return all((self.path / "last" / name).is_file() for name in _CHECKPOINT_FILES)

    def check(self) -> None:
        """Refuse, before anything is done, a path that cannot hold this run.

        Raises:
            ValueError: the path is a file; it holds a run and neither ``resume`` nor
                ``overwrite`` was given; both were given; or ``overwrite`` would have to delete
                one of two runs (a complete run and the one an earlier overwrite replaced).
            FileNotFoundError: ``resume`` without a checkpoint in ``path/last``.
            PermissionError: the folder (or the first existing parent) is not writable.
        """
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"--output-dir {str(self.path)!r} is a file, not a folder")
        existing, previous = self.existing(), self.pending_previous()
        if self.resume:
            recover_directory(self.path / "last")
            if not (self.path / "last").is_dir():
                raise FileNotFoundError(f"--resume: no checkpoint at {str(self.path / 'last')!r}")
        elif previous is not None and not self.overwrite:
            raise ValueError(
                f"{str(previous)!r} holds the run an interrupted --overwrite of "
                f"{str(self.path)!r} replaced: pass --restore-previous to put it back, or "
                "--overwrite to start the new run again (it is kept until that run's first "
                "checkpoint)"
            )
        elif previous is not None and self.has_checkpoint():
            raise ValueError(
                f"--overwrite: {str(self.path)!r} holds a complete run ({self.path / 'last'}) "
                f"and {str(previous)!r} the run an earlier --overwrite replaced; replacing now "
                "would delete one of them: delete the one you no longer need first"
            )
        elif existing and not self.overwrite:
            raise ValueError(
                f"--output-dir {str(self.path)!r} already holds a run ({', '.join(existing)}); "
                "pass --resume to continue it or --overwrite to replace it"
            )
        writable = self.path
        while not writable.exists():
            writable = writable.parent
        if not os.access(writable, os.W_OK | os.X_OK):
            raise PermissionError(
                f"--output-dir {str(self.path)!r}: {str(writable)!r} is not writable"
            )

    # ---------------------------------------------------------------- lock and replacement
    def __enter__(self) -> RunFolder:
        self.check()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._repair()
            for name in ("last", "best"):
                recover_directory(self.path / name)
            previous = self.pending_previous()
            if self.resume and previous is not None:
                self.notify(
                    f"{str(previous)!r} still holds the run an earlier --overwrite replaced; "
                    "it is kept (delete it when you no longer need it)"
                )
            elif self.overwrite and previous is not None:
                self._discard_interrupted("an interrupted --overwrite")
                self._previous = previous
                self.notify(
                    f"--overwrite: the run replaced by an earlier, interrupted --overwrite is "
                    f"kept in {str(previous)!r}; {self._until}"
                )
            elif self.overwrite and self.existing():
                self._move_aside()
        except BaseException:
            self._unlock()
            raise
        return self

    @property
    def _until(self) -> str:
        return (
            "it is deleted once the new run has written its first checkpoint; until then "
            f"'rvos train --out {self.path} --restore-previous' puts it back"
        )

    def started(self) -> None:
        """The new run wrote a checkpoint: once ``last/`` is complete, the previous run goes."""
        if self._previous is None or not self.has_checkpoint():
            return
        self._started = True
        self.notify(
            f"the new run wrote its first checkpoint ({self.path / 'last'}); deleting the "
            f"previous run in {str(self._previous)!r}"
        )
        deleting = self.path / _DELETING
        os.replace(self._previous, deleting)
        self._previous = None
        shutil.rmtree(deleting, ignore_errors=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._previous is not None and exc_type is not None:
                self._put_back("the new run failed before its first checkpoint")
            elif self._previous is not None:
                self.notify(
                    f"the new run ended without a checkpoint; the previous run is kept in "
                    f"{str(self._previous)!r}"
                )
        finally:
            self._unlock()

    def restore_previous(self) -> Path:
        """Put back the run an interrupted ``overwrite`` left in ``path/previous-run``.

        The interrupted run's files (it has no complete checkpoint) are removed, each named.

        Returns:
            The run folder.

        Raises:
            FileNotFoundError: there is no previous run to restore (the folder named).
            ValueError: ``path`` holds a complete run (``last/``), which restoring would delete.
            RunLockedError: a run uses the folder.
        """
        previous = self.pending_previous()
        if previous is None:
            raise FileNotFoundError(
                f"--restore-previous: no previous run in {str(self.previous)!r} (one is kept "
                "there only while an --overwrite has not written its first checkpoint)"
            )
        if previous.name != _RESTORING and self.has_checkpoint():
            raise ValueError(
                f"--restore-previous: {str(self.path)!r} holds a complete run "
                f"({self.path / 'last'}), which restoring would delete; move it away or delete "
                f"it first (the previous run stays in {str(previous)!r})"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._repair()
            if self.pending_previous() is not None:
                self._previous = self.pending_previous()
                self._put_back("--restore-previous", "the interrupted run")
        finally:
            self._unlock()
        return self.path

    # ---------------------------------------------------------------- moves (kill-safe)
    def _repair(self) -> None:
        """Finish what a killed process left half done (under the lock)."""
        for name in (_MOVING, _RESTORING):  # their files belong in the run folder
            folder = self.path / name
            if folder.is_dir():
                self._move_all(folder, self.path)
                self.notify(f"finished putting back the files of {str(folder)!r}")
        shutil.rmtree(self.path / _DELETING, ignore_errors=True)
        legacy = self.path / _LEGACY_PREVIOUS
        if legacy.is_dir() and not self.previous.exists():
            os.replace(legacy, self.previous)
            self.notify(f"the previous run in {str(legacy)!r} is now in {str(self.previous)!r}")

    def _move_aside(self) -> None:
        moving = self.path / _MOVING
        moving.mkdir()
        names = self.existing()
        for name in names:
            os.replace(self.path / name, moving / name)
        os.replace(moving, self.previous)  # complete, or still in _MOVING (put back on start)
        self._previous = self.previous
        self.notify(
            f"--overwrite: the previous run ({', '.join(names)}) was moved to "
            f"{str(self.previous)!r}; {self._until}"
        )

    def _discard_interrupted(self, what: str) -> None:
        """Remove the run files of a run that has no complete checkpoint (named)."""
        removed = []
        for name in RUN_FILES:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            else:
                continue
            removed.append(name)
        if removed:
            self.notify(f"removed the files of {what} (no checkpoint): {', '.join(removed)}")

    def _put_back(self, why: str, replaced: str = "the new run") -> None:
        """Replace ``replaced``'s files with the previous run's (kill-safe: ``_RESTORING``)."""
        assert self._previous is not None
        self._discard_interrupted(replaced)
        restoring = self.path / _RESTORING
        if self._previous != restoring:
            os.replace(self._previous, restoring)
        self._move_all(restoring, self.path)
        self.notify(
            f"{why}: the previous run from {str(self._previous)!r} is back in {str(self.path)!r}"
        )
        self._previous = None

    @staticmethod
    def _move_all(source: Path, target: Path) -> None:
        for item in source.iterdir():
            if not (target / item.name).exists():
                os.replace(item, target / item.name)
        with contextlib.suppress(OSError):  # left in place if a name was taken (nothing lost)
            source.rmdir()

    def _lock(self) -> None:
        lock = self.path / LOCK_FILE
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(2):
            try:
                handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(lock):
                    raise RunLockedError(self._held_message(lock)) from None
                warnings.warn(
                    f"removing the stale lock {str(lock)!r} (its process no longer runs)",
                    RuntimeWarning,
                    stacklevel=3,
                )
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            with os.fdopen(handle, "w") as stream:
                json.dump(holder, stream)
            self._locked = True
            return
        raise RunLockedError(self._held_message(lock))

    def _unlock(self) -> None:
        if self._locked:
            with contextlib.suppress(FileNotFoundError):
                (self.path / LOCK_FILE).unlink()
            self._locked = False

    @staticmethod
    def _holder(lock: Path) -> dict:
        try:
            return json.loads(lock.read_text())
        except (OSError, ValueError):
            return {}

    def _stale(self, lock: Path) -> bool:
        holder = self._holder(lock)
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return False
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _held_message(self, lock: Path) -> str:
        holder = self._holder(lock)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
        return (
            f"{str(self.path)!r} is in use by another run (pid {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')}, since {since}); if no run uses it, delete {str(lock)!r}"
        )
