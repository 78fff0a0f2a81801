"""A run (report) directory: who may write it, and what an earlier run left there.

:func:`open_run_dir` is held for the whole of a run. It takes an exclusive, non-blocking
lock on ``DIR/.lock`` (so two processes never write the same directory), refuses a
directory that already holds a run unless the caller resumes or overwrites it, removes
the temporary files of interrupted atomic writes and, when overwriting, the old run's
files. Only files medtoolkit writes (:data:`RUN_FILES`) are ever removed.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medtoolkit.training.checkpoint import TMP_SUFFIX

#: name patterns of the files a run writes into its directory; ``model_*.pt`` and
#: ``checkpoint_*.pt`` cover a staged run's per-stage and per-unit files too
#: (``model_<split>.<stage>.pt``, ``model_<split>.<stage>.h<index>.pt``, ``checkpoint_<split>.<stage>.pt``)
RUN_FILES = ("config.yaml", "metrics.json", "report.md", "curves.png", "groups.png", "model_*.pt",
             "checkpoint_*.pt")
LOCK_NAME = ".lock"

log = logging.getLogger("medtoolkit")


class RunDirectoryError(ValueError):
    """A run directory is in use, or holds a run the caller did not say to resume or overwrite."""


def run_files(directory: Path) -> list[Path]:
    """The files of an earlier run in ``directory`` (sorted; empty for a fresh directory)."""
    found = {path for pattern in RUN_FILES for path in directory.glob(pattern) if path.is_file()}
    return sorted(found)


def stale_temporaries(directory: Path) -> list[Path]:
    """Temporary files an interrupted atomic write of a run file left in ``directory``."""
    found = {path for pattern in RUN_FILES for path in directory.glob(f"{pattern}*{TMP_SUFFIX}")
             if path.is_file()}
    return sorted(found)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


@contextmanager
def _exclusive_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory/.lock`` (flock, non-blocking) with this process id written in it."""
    path = directory / LOCK_NAME
    try:  # never through a symbolic link: truncating the lock would truncate the file it points to
        handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise RunDirectoryError(
                f"{path} is a symbolic link: refusing to lock the run directory through it (remove it)"
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise RunDirectoryError(f"{path} is not a regular file: remove it to run into {directory}")
    try:
        locked = True
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(handle, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunDirectoryError(f"{directory} is in use by another medtoolkit process (pid {owner})") from None
        except OSError as error:  # a file system without locks (some network mounts)
            log.warning("cannot lock %s (%s): a concurrent run into it would not be detected", directory, error)
            locked = False
        if locked and (not path.exists() or os.stat(path).st_ino != os.fstat(handle).st_ino):
            # the previous holder removed the lock file between our open and our flock
            raise RunDirectoryError(f"{directory} is in use by another medtoolkit process (pid unknown)")
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while still locked: a waiting process then sees a new inode
    finally:
        os.close(handle)


@contextmanager
def open_run_dir(directory: str | Path, resume: bool = False, overwrite: bool = False) -> Iterator[Path]:
    """Lock ``directory`` for a run and make it ready (created when missing).

    Args:
        directory: the report directory.
        resume: continue the run already there (its files are kept).
        overwrite: remove the earlier run's files (only :data:`RUN_FILES`; other files stay).

    Yields:
        The directory, locked until the ``with`` block ends.

    Raises:
        ValueError: ``resume`` and ``overwrite`` together.
        RunDirectoryError: another process holds the directory, or it holds a run and
            neither ``resume`` nor ``overwrite`` was given.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: resume keeps the run, overwrite removes it")
    if not str(directory).strip():
        raise RunDirectoryError("the run directory is empty ('--out \"\"'): name a directory")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise RunDirectoryError(f"{directory} exists and is not a directory: name a directory for the run")
    directory.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(directory):
        _remove(stale_temporaries(directory))
        earlier = run_files(directory)
        if earlier and not (resume or overwrite):
            names = ", ".join(path.name for path in earlier[:3]) + (", ..." if len(earlier) > 3 else "")
            raise RunDirectoryError(
                f"{directory} already holds a run ({names}); pass --resume to continue it or "
                "--overwrite to replace it (Python: resume=True / overwrite=True)"
            )
        if overwrite:
            _remove(earlier)
        yield directory
