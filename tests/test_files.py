"""Bounded reading of regular files: FIFOs and directories refused unread, sizes capped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medtoolkit.files import FileTooLargeError, NotARegularFileError, read_regular_file


def test_reads_a_regular_file_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abcd")
    assert read_regular_file(path, 4) == b"abcd"


def test_a_file_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abcde")
    with pytest.raises(FileTooLargeError) as caught:
        read_regular_file(path, 4)
    assert (caught.value.size, caught.value.limit) == (5, 4)


def test_a_fifo_and_a_directory_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFileError) as caught:
        read_regular_file(fifo, 10)
    assert caught.value.kind == "not a regular file (a device, FIFO or socket)"
    with pytest.raises(NotARegularFileError) as caught:
        read_regular_file(tmp_path, 10)
    assert caught.value.kind == "a directory"


def test_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing", 10)
