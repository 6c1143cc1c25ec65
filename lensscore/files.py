"""Writing files safely: atomic replacement under unique temporary names, and one writer at a time.

Used by the catalog writer, the gallery and ``train`` (caches, run state): a crash leaves either
the old file or the new one, never half of one, and two processes never share a temporary name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import LensscoreError

__all__ = ["atomic_path", "atomic_write", "check_outputs", "FileLock"]


def check_outputs(*paths, overwrite: bool = False) -> None:
    """Refuse, before any work, output files that exist (without ``overwrite``) or whose
    directory is missing (a gallery's HTML and PNG: the same rule as the scan's catalog).

    Parameters
    ----------
    *paths : path or None
        The files to be written; ``None`` is skipped.
    overwrite : bool
        Existing files may be replaced.

    Raises
    ------
    LensscoreError
        A missing directory, or an existing file without ``overwrite``.
    """
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        if not p.parent.is_dir():
            raise LensscoreError(f"{p}: directory {p.parent} does not exist; create it first")
        if p.exists() and not overwrite:
            raise LensscoreError(f"{p} exists; use --overwrite to replace it")


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a unique temporary path beside ``path``; on success it replaces ``path``.

    Write the file under the yielded name (any writer that takes a path). If the block raises,
    the temporary file is removed and ``path`` is untouched. ``suffix`` ends the temporary name
    (writers that choose a format by the name's ending: ``".fits"``, ``".npy"``).
    """
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp" + suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600; the result gets what open() would give it (the umask)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask (read by setting and restoring it: there is no getter)."""
    m = os.umask(0o022)
    os.umask(m)
    return m


def atomic_write(path, data: str | bytes, encoding: str = "utf-8") -> None:
    """Write ``data`` to ``path`` atomically (a unique temporary file, then ``os.replace``)."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding=encoding)
        else:
            tmp.write_bytes(data)


class FileLock:
    """An exclusive lock on ``path`` (created if missing) for as long as it is held.

    An advisory ``flock`` on an open file: the kernel releases it when the process dies
    (SIGKILL included), so a crashed scan never leaves a stale lock behind. Where ``fcntl`` is
    missing (Windows) the lock is a no-op.

    Raises
    ------
    LensscoreError
        On :meth:`acquire` if another process holds the lock (``what`` names the resource).
    """

    def __init__(self, path, what: str):
        self.path = Path(path)
        self.what = what
        self._fh = None

    def acquire(self) -> FileLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        for _ in range(10):
            fh = open(self.path, "a+")
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                raise LensscoreError(f"{self.what} is being written by another process (lock "
                                     f"{self.path} held); wait for it or write elsewhere") from None
            try:  # the holder before us may have unlinked the file: lock the one on disk
                if os.stat(self.path).st_ino == os.fstat(fh.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            fh.close()
        else:  # pragma: no cover - ten lost races in a row
            raise LensscoreError(f"{self.path}: cannot take the lock")
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        # unlink while still holding the lock: a waiting process then locks a fresh file
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self._fh.close()
        self._fh = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
