"""Reading raw CSV tables (MIMIC-III/IV, eICU) with errors that name file, line and column.

:func:`read_table` reads a ``.csv`` or ``.csv.gz`` file in two passes:

1. a vectorised byte scan (numpy, 16 MB blocks) checks UTF-8, counts the fields of every
   record (quotes respected) and records each record's line number, so a ragged row, a
   truncated file or a bad byte is reported with its line;
2. pandas' C parser reads the wanted columns as strings (``dtype=str``,
   ``keep_default_na=False``: blanks stay ``""``, nothing is silently turned into NaN), and
   the columns are converted with vectorised pandas; only when a conversion fails is the
   first bad cell located and reported.

The returned frame's index is each row's line number in the file (header = line 1), so
callers can name lines in their own errors.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medtoolkit.data.report import DataReport

#: column kinds understood by :func:`read_table`
KINDS = ("str", "int", "int?", "float")
_BLOCK = 16 * 1024 * 1024
_QUOTE, _COMMA, _NEWLINE, _CR = 34, 44, 10, 13


class DataFormatError(ValueError):
    """A raw table is malformed; the message names the file and, where known, line and column."""


def find_table(directory: Path, name: str) -> Path:
    """Find table ``name`` in ``directory`` (case-insensitive stem, ``.csv`` or ``.csv.gz``).

    Args:
        directory: the folder holding the tables.
        name: the table's stem, e.g. ``"DIAGNOSES_ICD"`` or ``"admissions"``.

    Returns:
        The path of the table (a plain ``.csv`` wins over ``.csv.gz`` when both exist).

    Raises:
        FileNotFoundError: the directory or the table is missing; the message lists the
            expected names and the tables that are there.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"data directory {directory} does not exist or is not a directory")
    wanted = name.lower()
    matches: dict[str, Path] = {}
    present: list[str] = []
    for entry in sorted(directory.iterdir()):
        lower = entry.name.lower()
        for suffix in (".csv", ".csv.gz"):
            if lower.endswith(suffix):
                present.append(entry.name)
                if lower[: -len(suffix)] == wanted and entry.is_file():
                    matches[suffix] = entry
    if ".csv" in matches:
        return matches[".csv"]
    if ".csv.gz" in matches:
        return matches[".csv.gz"]
    listing = ", ".join(present) if present else "no .csv or .csv.gz files"
    raise FileNotFoundError(
        f"table {name!r} not found in {directory}: expected {name}.csv or {name}.csv.gz "
        f"(any case); found: {listing}"
    )


@dataclass
class _Scan:
    header: list[str]
    record_lines: np.ndarray
    blank_lines: int


def _open_binary(path: Path) -> io.BufferedIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _scan(path: Path) -> _Scan:
    """Check UTF-8 and field counts of every record; return header and record line numbers."""
    header: list[str] | None = None
    expected = 0
    lines_done = 0  # physical lines before ``pending``
    pending = b""
    record_lines: list[np.ndarray] = []
    blank_lines = 0
    try:
        with _open_binary(path) as handle:
            at_eof = False
            while not at_eof:
                block = handle.read(_BLOCK)
                at_eof = not block
                data = pending + block
                unterminated = False
                if at_eof:
                    if not data:
                        break
                    if not data.endswith(b"\n"):
                        data += b"\n"
                        unterminated = True
                arr = np.frombuffer(data, dtype=np.uint8)
                quotes = arr == _QUOTE
                if quotes.any():  # parity of the quotes so far: True inside a quoted field
                    inside = np.bitwise_xor.accumulate(quotes.view(np.uint8)).view(bool)
                else:
                    inside = np.zeros(len(arr), dtype=bool)
                is_newline = arr == _NEWLINE
                boundaries = np.flatnonzero(is_newline & ~inside)
                if at_eof and inside[-1]:
                    closed = int(boundaries[-1]) + 1 if boundaries.size else 0
                    line = lines_done + 1 + int(np.count_nonzero(is_newline[:closed]))
                    raise DataFormatError(
                        f"{path}: line {line}: a quoted field is never closed - the file looks truncated"
                    )
                if boundaries.size == 0:
                    pending = data
                    continue
                end = int(boundaries[-1]) + 1
                try:
                    data[:end].decode("utf-8")
                except UnicodeDecodeError as error:
                    line = lines_done + 1 + data[: error.start].count(b"\n")
                    names = header
                    if names is None and 0 <= data.find(b"\n") < error.start:  # header not parsed yet
                        first = data[: data.find(b"\n")].decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r")
                        names = next(csv.reader([first]))
                    column = _column_at(arr, inside, data.rfind(b"\n", 0, error.start) + 1, error.start, names)
                    raise DataFormatError(
                        f"{path}: line {line}: bytes {data[error.start:error.start + 4]!r}{column} are not valid "
                        f"UTF-8 ({error.reason}); re-encode the file as UTF-8"
                    ) from None
                commas = np.flatnonzero((arr[:end] == _COMMA) & ~inside[:end])
                fields = np.diff(np.concatenate(([0], np.searchsorted(commas, boundaries)))) + 1
                starts = np.concatenate(([0], boundaries[:-1] + 1))
                lengths = boundaries - starts
                blank = (lengths == 0) | ((lengths == 1) & (arr[np.minimum(starts, end - 1)] == _CR))
                newlines = np.flatnonzero(is_newline[:end])
                first_line = lines_done + 1 + np.searchsorted(newlines, starts)
                if header is None:
                    first = int(np.flatnonzero(~blank)[0]) if (~blank).any() else None
                    if first is None:
                        lines_done += len(newlines)
                        pending = data[end:]
                        continue
                    text = data[starts[first]:boundaries[first]].decode("utf-8").lstrip("\ufeff").rstrip("\r")
                    header = next(csv.reader([text]))
                    expected = int(fields[first])
                    keep = np.arange(len(fields)) > first
                    blank_lines += int(blank[:first].sum())
                else:
                    keep = np.ones(len(fields), dtype=bool)
                bad = np.flatnonzero(keep & ~blank & (fields != expected))
                if bad.size:
                    index = int(bad[0])
                    truncated = unterminated and index == len(fields) - 1 and fields[index] < expected
                    hint = " - the file looks truncated (its last line is incomplete)" if truncated else ""
                    raise DataFormatError(
                        f"{path}: line {int(first_line[index])}: expected {expected} fields as in the header, "
                        f"found {int(fields[index])}{hint}"
                    )
                blank_lines += int((keep & blank).sum())
                record_lines.append(first_line[keep & ~blank])
                lines_done += len(newlines)
                pending = data[end:]
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise DataFormatError(f"{path}: cannot decompress/read the file ({error}) - truncated or corrupt?") from None
    if header is None:
        raise DataFormatError(f"{path}: the file is empty (no header line)")
    lines = np.concatenate(record_lines) if record_lines else np.zeros(0, dtype=np.int64)
    return _Scan(header=header, record_lines=lines, blank_lines=blank_lines)


def _column_at(arr: np.ndarray, inside: np.ndarray, start: int, stop: int, header: list[str] | None) -> str:
    """``" in column NAME"`` for the field holding byte ``stop`` of the record starting at ``start``."""
    if header is None:
        return ""
    index = int(np.count_nonzero((arr[start:stop] == _COMMA) & ~inside[start:stop]))
    return f" in column {header[index]}" if index < len(header) else ""


def read_table(
    path: Path,
    columns: Mapping[str, str],
    optional: Sequence[str] = (),
    report: DataReport | None = None,
) -> pd.DataFrame:
    """Read the wanted columns of a raw table, checked and converted.

    Args:
        path: a ``.csv`` or ``.csv.gz`` file.
        columns: canonical UPPER-CASE column name -> kind: ``"str"`` (kept verbatim, blanks
            are ``""``), ``"int"`` (int64; a blank or non-integer cell is an error),
            ``"int?"`` (nullable ``Int64``; blanks become ``<NA>``) or ``"float"`` (float64;
            blanks become NaN). Headers are matched case-insensitively.
        optional: names in ``columns`` that may be absent from the file (then they are absent
            from the result too).
        report: where blank lines and exact duplicate rows (over the selected columns) are
            counted as drops.

    Returns:
        A frame with the upper-case canonical column names (in the order of ``columns``)
        whose index is each row's line number in the file (header = line 1).

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: missing column, non-UTF-8 bytes, ragged row, truncated or corrupt
            file, or a cell that does not convert; the message names file, line and column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table file {path} does not exist")
    for name, kind in columns.items():
        if kind not in KINDS:
            raise ValueError(f"column {name!r}: unknown kind {kind!r} (use one of {KINDS})")
    scan = _scan(path)
    by_upper: dict[str, str] = {}
    for raw in scan.header:
        key = raw.strip().upper()
        if key in by_upper:
            raise DataFormatError(f"{path}: header names column {key!r} twice (case-insensitively)")
        by_upper[key] = raw
    wanted: dict[str, str] = {}
    for name in columns:
        key = name.upper()
        if key in by_upper:
            wanted[key] = by_upper[key]
        elif name not in optional and key not in {o.upper() for o in optional}:
            raise DataFormatError(
                f"{path}: required column {key!r} is missing; the file has columns: "
                f"{', '.join(scan.header)}"
            )
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, usecols=list(wanted.values()),
            encoding="utf-8", engine="c", skip_blank_lines=True,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError, zlib.error) as error:
        raise DataFormatError(f"{path}: cannot parse the file: {error}") from None
    frame = frame.rename(columns={raw: key for key, raw in wanted.items()})[list(wanted)]
    if len(frame) == len(scan.record_lines):
        frame.index = pd.Index(scan.record_lines, name="line")
    else:  # quoted line breaks confuse the mapping; fall back to record positions
        frame.index = pd.Index(np.arange(len(frame), dtype=np.int64) + 2, name="line")
    if report is not None:
        report.drop("read: blank lines", scan.blank_lines, "empty lines in the file", source=path.name)
    for name, kind in columns.items():
        key = name.upper()
        if key in frame.columns and kind != "str":
            frame[key] = _convert(frame[key], kind, path, key)
    duplicated = frame.duplicated(keep="first").to_numpy()
    if duplicated.any():
        examples = [f"line {line}" for line in frame.index[duplicated][:5]]
        if report is not None:
            report.drop(
                "read: duplicate rows", int(duplicated.sum()),
                f"identical to an earlier row in columns {', '.join(frame.columns)}",
                source=path.name, examples=examples,
            )
        frame = frame.loc[~duplicated]
    return frame


def _convert(column: pd.Series, kind: str, path: Path, name: str) -> pd.Series:
    """Convert a string column; on failure name the first bad cell.

    The fast path is one vectorised cast; only when it fails is the column scanned cell by
    cell (vectorised too) to find and name the first bad value.
    """
    text = column.astype(str)
    try:
        if kind == "int":
            return text.astype(np.int64)
        empty = (text == "").to_numpy()
        if kind == "int?":
            result = pd.Series(pd.array(np.full(len(text), pd.NA), dtype="Int64"), index=column.index)
            if (~empty).any():
                result[~empty] = text[~empty].astype(np.int64).to_numpy()
            return result
        return pd.Series(np.where(empty, "nan", text.to_numpy(dtype=object)), index=column.index).astype(np.float64)
    except (ValueError, TypeError, OverflowError):
        pass  # locate the offending cell below
    blank = (text.str.strip() == "").to_numpy()
    numbers = pd.to_numeric(text.where(~blank, np.nan), errors="coerce")
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(values) & ~blank
    if kind == "int":
        bad |= blank
    if kind in ("int", "int?"):
        finite = ~np.isnan(values)
        bad |= finite & (np.mod(values, 1.0, where=finite, out=np.zeros_like(values)) != 0)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        expected = {"int": "an integer", "int?": "an integer or blank", "float": "a number or blank"}[kind]
        raise DataFormatError(
            f"{path}: line {column.index[position]}, column {name}: {text.iloc[position]!r} is not {expected} "
            f"({int(bad.sum())} such cells in this column)"
        )
    if kind == "int":
        as_int = pd.to_numeric(text, errors="raise")
        return as_int.astype(np.int64)
    if kind == "int?":
        return pd.Series(pd.array(np.where(blank, None, values), dtype="Int64"), index=column.index)
    return pd.Series(values, index=column.index)
