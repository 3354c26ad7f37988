"""The output folder of a training run: locked while a run uses it, replaced only safely.

:class:`RunFolder` is what ``rvos train`` wraps around the Trainer:

* before anything else, ``check()`` refuses a path that is a file or cannot be written;
* entering takes a lock file ``.rvos.lock`` (holder's pid, host and start time), so a second
  run on the same folder is refused; a lock left by a dead process on this host is stale and
  taken over (with a warning);
* with ``overwrite``, the previous run's files are moved aside into ``.previous-run/``; they
  are deleted once the new run has written its first checkpoint, and put back if it fails
  before that;
* interrupted checkpoint saves are repaired (:func:`rvoslib._io.recover_directory`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import warnings
from pathlib import Path
from types import TracebackType

from rvoslib._io import recover_directory

__all__ = ["LOCK_FILE", "RUN_FILES", "RunFolder", "RunLockedError"]

LOCK_FILE = ".rvos.lock"
PREVIOUS = ".previous-run"
#: The files and folders a run writes (what ``overwrite`` replaces).
RUN_FILES = (
    "last",
    "best",
    "history.jsonl",
    "metrics.json",
    "overlays",
    "recipe.yaml",
    "tensorboard",
)


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock."""


class RunFolder:
    """Lock, check and safely replace a run's output folder.

    Args:
        path: The output folder.
        resume: The run continues the one in ``path`` (its files are kept).
        overwrite: Replace a finished run in ``path``.

    Example:
        >>> import tempfile
        >>> with RunFolder(tempfile.mkdtemp()) as folder:
        ...     (folder.path / LOCK_FILE).is_file()
        True
    """

    def __init__(self, path: str | os.PathLike, resume: bool = False, overwrite: bool = False):
        self.path = Path(path)
        self.resume, self.overwrite = resume, overwrite
        self._previous: Path | None = None
        self._started = False
        self._locked = False

    # ---------------------------------------------------------------- checks (no side effect)
    def existing(self) -> list[str]:
        """The run files already in the folder."""
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def check(self) -> None:
        """Refuse, before anything is done, a path that cannot hold this run.

        Raises:
            ValueError: the path is a file; it holds a run and neither ``resume`` nor
                ``overwrite`` was given; or both were given.
            FileNotFoundError: ``resume`` without a checkpoint in ``path/last``.
            PermissionError: the folder (or the first existing parent) is not writable.
        """
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"--output-dir {str(self.path)!r} is a file, not a folder")
        existing = self.existing()
        if self.resume:
            recover_directory(self.path / "last")
            if not (self.path / "last").is_dir():
                raise FileNotFoundError(f"--resume: no checkpoint at {str(self.path / 'last')!r}")
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
            for name in ("last", "best"):
                recover_directory(self.path / name)
            if self.overwrite and self.existing():
                self._move_aside()
        except BaseException:
            self._unlock()
            raise
        return self

    def started(self) -> None:
        """The new run wrote its first checkpoint: the previous run's files can go."""
        self._started = True
        if self._previous is not None:
            shutil.rmtree(self._previous, ignore_errors=True)
            self._previous = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._previous is not None:
                if exc_type is None or self._started:
                    shutil.rmtree(self._previous, ignore_errors=True)
                else:
                    self._restore()
        finally:
            self._unlock()

    def _move_aside(self) -> None:
        previous = self.path / PREVIOUS
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir()
        for name in self.existing():
            os.replace(self.path / name, previous / name)
        self._previous = previous

    def _restore(self) -> None:
        """Put the previous run back (the failed new run's files are removed)."""
        assert self._previous is not None
        for name in RUN_FILES:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            elif target.exists():
                target.unlink()
        for item in self._previous.iterdir():
            os.replace(item, self.path / item.name)
        self._previous.rmdir()
        self._previous = None

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
