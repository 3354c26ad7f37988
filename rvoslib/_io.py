"""File helpers shared by every reader and writer of rvoslib.

* Atomic writes: nothing a user saved is ever half-written (a temporary file in the target
  folder, then ``os.replace``; the file gets the permissions of an ordinary new file).
* :class:`ImageReadError`: the one error for a frame, mask or video that cannot be decoded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "ImageReadError",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_text",
    "recover_directory",
]


class ImageReadError(OSError, ValueError):
    """A frame, an annotation, a frame folder or a video file cannot be read.

    Both an ``OSError`` (as a failed ``open``) and a ``ValueError`` (bad content), so that
    ``except OSError`` and ``except ValueError`` both catch it. ``path`` names the file.

    Args:
        path: The file or folder that could not be read.
        reason: What went wrong.
        kind: What ``path`` is, for the message (``"image"``, ``"video"``).

    Example:
        >>> str(ImageReadError("a/00002.jpg", "truncated file"))
        "cannot read image 'a/00002.jpg': truncated file"
    """

    def __init__(self, path: str | os.PathLike, reason: str, kind: str = "image") -> None:
        self.path = str(path)
        self.reason = reason
        self.kind = kind
        super().__init__(f"cannot read {kind} {self.path!r}: {reason}")

    def __reduce__(self) -> tuple:  # picklable across DataLoader workers
        return (type(self), (self.path, self.reason, self.kind))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Readers see the old file or the new one, never half of it. The parent folders are
    created; the file gets the usual permissions (``0o666`` minus the umask), not the
    owner-only ones of ``mkstemp``.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with _plain_disk_full(path), os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp makes owner-only files
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a temporary name and move it to ``path`` only on success.

    An existing folder at ``path`` is kept until the new one is complete, then replaced: it is
    renamed to ``.<name>.<random>.old``, the new one renamed into place, the old one removed.
    A process killed between the two renames leaves the complete old folder under its ``.old``
    name: :func:`recover_directory` (called here before writing, and by readers such as the
    Trainer's resume) puts it back, so ``path`` is never lost. If the body raises, the
    temporary folder is removed and ``path`` is left as it was. Every file gets the usual
    permissions (``0o666`` minus the umask).

    Yields:
        The temporary folder to write into.

    Raises:
        OSError: the disk is full (the message says so and names ``path``), or another
            file-system error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(path)
    temp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(temp_dir, 0o777 & ~_umask())  # mkdtemp makes owner-only folders
    try:
        with _plain_disk_full(path):
            yield temp_dir
            _normal_permissions(temp_dir)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    backup = None
    if path.exists():
        backup = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
        backup.rmdir()
        os.replace(path, backup)
    os.replace(temp_dir, path)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def recover_directory(path: str | os.PathLike) -> bool:
    """Repair what an interrupted :func:`atomic_directory` left next to ``path``.

    If ``path`` is missing but a complete previous version waits under ``.<name>.*.old``, it
    is renamed back; leftover temporary folders (``.<name>.*.tmp``) and old versions are
    removed.

    Returns:
        Whether a previous version was put back.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return False
    olds = sorted(path.parent.glob(f".{path.name}.*.old"), key=lambda p: p.stat().st_mtime)
    restored = False
    if not path.exists() and olds:
        os.replace(olds.pop(), path)
        restored = True
    for leftover in [*olds, *path.parent.glob(f".{path.name}.*.tmp")]:
        shutil.rmtree(leftover, ignore_errors=True)
    return restored


def _normal_permissions(folder: Path) -> None:
    """Give every file under ``folder`` the permissions of an ordinary new file."""
    mode = 0o666 & ~_umask()
    for item in folder.rglob("*"):
        if item.is_file():
            os.chmod(item, mode)


@contextlib.contextmanager
def _plain_disk_full(path: Path) -> Iterator[None]:
    """Re-raise ``ENOSPC`` as an ``OSError`` that says plainly that the disk is full."""
    import errno

    try:
        yield
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise OSError(
                errno.ENOSPC, f"no space left on the device while writing {str(path)!r}"
            ) from error
        raise
