"""Files written whole or not at all, and durable once their name appears: the one way medi writes a file in place.

A file is written under a temporary name beside its target, flushed to disk (``fsync``), renamed over the target
(atomic within a folder), and the folder is flushed so the rename itself survives a crash. Readers, other processes
and other nodes of a shared file system (stage outputs, the embedding cache) see the old file or the whole new one,
never a part, and a crashed node leaves no name pointing at data that never reached the disk.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` for a writer that takes a path (Parquet, NumPy, Arrow); when the block
    ends it becomes ``path`` durably. On an error it is removed and ``path`` is left as it was."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # honours the umask, unlike mkstemp
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


@contextmanager
def atomic_write(path: Path | str, mode: str = "w", *, encoding: str | None = None) -> Iterator[IO]:
    """``open(path, mode)`` written under a temporary name and moved into place durably (``atomic_path``)."""
    if "b" not in mode:
        encoding = encoding or "utf-8"
    with atomic_path(path) as temporary, open(temporary, mode, encoding=encoding) as handle:
        yield handle


def write_text(path: Path | str, text: str) -> None:
    """``path.write_text(text)`` (UTF-8), whole or not at all, durable."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


# what a file system that cannot open or flush a folder answers; an I/O error (EIO) is raised as any other
NO_FOLDER_SYNC = {errno.EINVAL, errno.ENOTSUP, errno.EACCES, errno.EPERM, errno.EBADF, errno.EISDIR}


def fsync_folder(folder: Path | str) -> None:
    """Make the names in ``folder`` (a rename into it) durable. Where the file system cannot flush a folder, the
    rename is as durable as that system makes it, which is all it offers."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in NO_FOLDER_SYNC:
            return
        raise
    try:
        os.fsync(descriptor)
    except OSError as exc:
        if exc.errno not in NO_FOLDER_SYNC:
            raise
    finally:
        os.close(descriptor)


def fsync_tree(path: Path | str) -> None:
    """Flush a file, or every file and folder under a folder (a finished output, before it is moved into place)."""
    if Path(path).is_file():
        _fsync(Path(path))
        return
    for root, _, files in os.walk(path):
        for name in files:
            _fsync(Path(root) / name)
        fsync_folder(root)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
