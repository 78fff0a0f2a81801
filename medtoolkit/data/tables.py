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
import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medtoolkit.data.report import DataReport

#: column kinds understood by :func:`read_table`
KINDS = ("str", "int", "int?", "float")
#: CSV engines of :func:`read_table`
ENGINES = ("pandas", "arrow")
logger = logging.getLogger("medtoolkit.data")
_WARNED = False
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
    engine: str = "pandas",
    categorical: bool = False,
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
        engine: ``"pandas"`` (byte scan + pandas' C parser, described above) or ``"arrow"``
            (pyarrow's multi-threaded CSV reader after a light UTF-8/line-count pass; any file
            it cannot read plainly - bad bytes, ragged rows, quoted line breaks, a cell that
            does not convert - goes through the pandas path, so errors are the same). Both give
            the same frame. ``"arrow"`` needs pyarrow; without it ``"pandas"`` is used (logged).
        categorical: return ``"str"`` columns as pandas ``category`` (values unchanged; much
            smaller for repetitive columns, and per-value work can run on the categories).

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
    engine = resolve_engine(engine)
    if engine == "arrow":
        frame = _read_arrow(path, columns, optional, report, categorical)
        if frame is not None:
            return frame
        # anything unusual (bad bytes, ragged rows, quoted line breaks...): the pandas path below
        # reads the file or raises the error naming file, line and column
    scan = _scan(path)
    wanted = select_columns(path, scan.header, columns, optional)
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
    if categorical:
        kinds = {name.upper(): kind for name, kind in columns.items()}
        for key in frame.columns:
            if kinds[key] == "str":
                frame[key] = frame[key].astype("category")
    return drop_duplicates(frame, path, report)


def drop_duplicates(frame: pd.DataFrame, path: Path, report: DataReport | None) -> pd.DataFrame:
    """Drop rows identical to an earlier row (over all columns), counted in ``report``."""
    keys = _row_keys(frame)
    if keys is not None:  # integer / categorical columns: the same test on packed int64 keys
        duplicated = (keys[0].duplicated(keep="first") if len(keys) == 1
                      else pd.DataFrame(dict(enumerate(keys))).duplicated(keep="first")).to_numpy()
    else:
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


def _row_keys(frame: pd.DataFrame) -> list[pd.Series] | None:
    """Rows of an all integer / categorical frame packed into few int64 keys (None otherwise).

    Each column becomes a small non-negative integer (category code, or value minus the
    column's minimum; missing values get their own number), and columns are packed by mixed
    radix while the product fits in 62 bits, so two rows are equal exactly when their keys are.
    """
    parts: list[tuple[np.ndarray, int]] = []
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy().astype(np.int64) + 1  # -1 (missing) -> 0
            parts.append((codes, len(column.cat.categories) + 1))
        elif pd.api.types.is_integer_dtype(column.dtype):
            missing = column.isna().to_numpy()
            values = column.to_numpy(dtype=np.int64, na_value=0) if missing.any() else column.to_numpy(dtype=np.int64)
            if len(values) == 0:
                return None
            low, high = int(values[~missing].min(initial=0)), int(values[~missing].max(initial=0))
            if high - low > 2 ** 40:
                return None
            shifted = values - low + 1
            shifted[missing] = 0
            parts.append((shifted, high - low + 2))
        else:
            return None
    keys: list[pd.Series] = []
    key, size = np.zeros(len(frame), dtype=np.int64), 1
    for values, radix in parts:
        if size * radix >= 2 ** 62:
            keys.append(pd.Series(key))
            key, size = np.zeros(len(frame), dtype=np.int64), 1
        key = key * radix + values
        size *= radix
    keys.append(pd.Series(key))
    return keys


def select_columns(
    path: Path, header: Sequence[str], columns: Mapping[str, str], optional: Sequence[str]
) -> dict[str, str]:
    """Match the wanted columns to the header case-insensitively: ``{UPPER name: header name}``.

    Raises:
        DataFormatError: the header repeats a name, or a required column is missing.
    """
    by_upper: dict[str, str] = {}
    for raw in header:
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
                f"{', '.join(header)}"
            )
    return wanted


def resolve_engine(engine: str) -> str:
    """``"pandas"`` or ``"arrow"``; ``"arrow"`` becomes ``"pandas"`` (logged once) without pyarrow."""
    if engine not in ENGINES:
        raise ValueError(f"unknown table engine {engine!r} (use one of {ENGINES})")
    if engine == "arrow" and not arrow_available():
        global _WARNED
        if not _WARNED:
            logger.info("pyarrow is not installed: raw tables are read with the pandas engine")
            _WARNED = True
        return "pandas"
    return engine


def arrow_available() -> bool:
    """Whether pyarrow (the ``"arrow"`` engine) can be imported."""
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return False
    return True


def convert(column: pd.Series, kind: str, path: Path, name: str) -> pd.Series:
    """Convert a string column to ``kind`` (see :func:`read_table`); errors name file, line, column."""
    return _convert(column, kind, path, name)


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


# ---------------------------------------------------------------------------- arrow engine
def _light_scan(path: Path) -> tuple[list[str], int] | None:
    """Header and physical line count of a plain file, or None when the pandas path must read it.

    Checks UTF-8 (pure-ASCII blocks skip the decoder) and counts line breaks; returns None
    when a block is not valid UTF-8, the file is empty or its first line is blank, so the
    exact error (or the careful read) comes from :func:`_scan`.
    """
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    first = b""
    last = b""
    try:
        with _open_binary(path) as handle:
            while True:
                block = handle.read(_BLOCK)
                if not block:
                    break
                if not first:
                    first = block[: block.find(b"\n")] if b"\n" in block else block
                if not block.isascii():
                    decoder.decode(block)
                newlines += block.count(b"\n")
                last = block
            decoder.decode(b"", final=True)
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error, OSError):
        return None
    if not last:
        return None
    text = first.decode("utf-8").lstrip("\ufeff").rstrip("\r")
    if not text.strip():
        return None
    lines = newlines + (0 if last.endswith(b"\n") else 1)
    return next(csv.reader([text])), lines


def _read_arrow(
    path: Path, columns: Mapping[str, str], optional: Sequence[str], report: DataReport | None,
    categorical: bool,
) -> pd.DataFrame | None:
    """:func:`read_table` with pyarrow's CSV reader; None when the pandas path must read the file.

    The file's own header is skipped and the names from :func:`_light_scan` are used (a
    byte-order mark cannot leak into a name). Row line numbers are ``2, 3, ...`` when the file
    has one line per record (line breaks = records + 1); otherwise they come from
    :func:`_scan`. A cell that does not convert is reported by the pandas converter.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    light = _light_scan(path)
    if light is None:
        return None
    header, lines = light
    wanted = select_columns(path, header, columns, optional)
    kinds = {name.upper(): kind for name, kind in columns.items()}
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=16 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(wanted.values()),
                column_types={raw: pa.string() for raw in wanted.values()},
                null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, OSError, EOFError, zlib.error):
        return None
    rows = table.num_rows
    if rows == lines - 1:
        index: pd.Index = pd.RangeIndex(2, rows + 2, name="line")
        blank_lines = 0
    else:  # blank lines or quoted line breaks: the byte scan knows each record's line
        scan = _scan(path)
        if len(scan.record_lines) != rows:
            return None
        index, blank_lines = pd.Index(scan.record_lines, name="line"), scan.blank_lines
    data: dict[str, pd.Series] = {}
    for key, raw in wanted.items():
        column = table.column(raw)
        kind = kinds[key]
        converted = None
        if kind != "str":
            try:
                if kind == "int":
                    converted = pd.Series(pc.cast(column, pa.int64()).to_numpy(), index=index)
                else:
                    blank = pc.equal(column, "")
                    cleaned = pc.if_else(blank, pa.scalar(None, pa.string()), column)
                    if kind == "int?":
                        values = pc.cast(cleaned, pa.int64()).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
                        converted = pd.Series(values.array, index=index)
                    else:
                        values = pc.cast(cleaned, pa.float64()).to_numpy(zero_copy_only=False)
                        converted = pd.Series(values.astype(np.float64), index=index)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                converted = None  # the pandas converter names the first bad cell (or accepts it)
            if converted is None:
                converted = _convert(pd.Series(column.to_pandas().array, index=index), kind, path, key)
            data[key] = converted
        else:  # categorical: encoded after the read (cheaper than the reader's dictionary type)
            values = pc.dictionary_encode(column) if categorical else column
            data[key] = pd.Series(values.to_pandas().array, index=index)
        table = table.drop_columns([raw])  # release the arrow buffers as soon as converted
    frame = pd.DataFrame(data, index=index)
    if report is not None:
        report.drop("read: blank lines", blank_lines, "empty lines in the file", source=path.name)
    return drop_duplicates(frame, path, report)
