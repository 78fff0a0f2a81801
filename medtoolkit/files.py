"""Reading an untrusted file with a size bound: regular files only, never blocking.

A path given by a user may name a FIFO (reading it blocks forever), a device (``/dev/zero``
never ends) or a sparse file of many gigabytes. :func:`read_regular_file` opens it without
blocking, refuses anything but a regular file, refuses a file whose size is over the limit
before reading it, and reads in blocks so that a file growing while it is read still stops
at the limit. Callers turn its errors into their own messages (run files, pickles).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["FileTooLargeError", "NotARegularFileError", "read_regular_file"]

#: bytes read at a time (a single read of the limit would reserve the whole limit up front)
_BLOCK = 1 << 24


class NotARegularFileError(ValueError):
    """The path is a directory, a device, a FIFO or a socket; :attr:`kind` says which in words."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path}: it is {kind}")
        self.kind = kind


class FileTooLargeError(ValueError):
    """The file holds more than the limit; :attr:`size` is its size when known before reading."""

    def __init__(self, path: Path, limit: int, size: int | None) -> None:
        super().__init__(f"{path}: more than {limit} bytes")
        self.limit = limit
        self.size = size


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The content of the regular file ``path``, at most ``limit`` bytes.

    Args:
        path: the file.
        limit: the largest size accepted, in bytes.

    Returns:
        The file's bytes (``len <= limit``).

    Raises:
        FileNotFoundError, OSError: the file cannot be opened (as ``os.open`` raises them).
        NotARegularFileError: a directory, device, FIFO or socket (nothing is read).
        FileTooLargeError: over ``limit`` bytes: ``size`` is the size on disk when that
            already says so (nothing is read), None when the file grew while being read.
    """
    path = Path(path)
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
            raise NotARegularFileError(path, kind)
        if info.st_size > limit:
            raise FileTooLargeError(path, limit, info.st_size)
        handle = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    chunks: list[bytes] = []
    total = 0
    with handle:
        while total <= limit:
            block = handle.read(min(_BLOCK, limit + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
    if total > limit:
        raise FileTooLargeError(path, limit, None)
    return b"".join(chunks)
