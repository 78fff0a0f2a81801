"""Training-split count statistics that components ask for by name ("statistics on demand").

A component declares the statistics it needs with
:meth:`~medtoolkit.components.base.Component.statistics_needed` and reads them with
:meth:`DataSchema.require_statistic <medtoolkit.components.schema.DataSchema.require_statistic>`;
the task computes a statistic from the training visits of the split the first time it is
required, and never computes one nobody asked for. Names are built with the functions
below, never typed by hand:

* :func:`code_counts` ``("diagnoses")`` -> ``"code_counts/diagnoses"``: float32 ``[V]``,
  the number of training visits containing each code.
* :func:`pair_counts` ``("diagnoses", "medications")`` -> ``"pair_counts/diagnoses/medications"``:
  float32 ``[V_rows, V_cols]``, the number of training visits containing both code i of
  ``rows`` and code j of ``cols``. Each visit counts once (a code listed twice in a visit
  counts once). With ``rows == cols`` the matrix is symmetric and its diagonal equals
  :func:`code_counts`: ``pair_counts("medications", "medications")`` is the drug-drug
  co-occurrence count matrix.

Counts are computed with numpy only (scipy is not a core dependency): codes are
deduplicated per visit and pairs counted with ``np.bincount`` on flattened pair indices,
block by block so that memory stays bounded (:data:`MAX_BLOCK_PAIRS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from medtoolkit.data.ehr import EHRData, _gather_ranges

#: statistic kinds and how many vocabularies their names carry
STATISTIC_KINDS: dict[str, int] = {"code_counts": 1, "pair_counts": 2}
#: at most this many (visit, code) or (visit, row code, column code) entries are expanded
#: at once (the count array itself is also allowed per block, whatever its size)
MAX_BLOCK_PAIRS = 1 << 22
_SEPARATOR = "/"


def code_counts(vocabulary: str) -> str:
    """Name of the per-code visit counts of ``vocabulary``.

    Args:
        vocabulary: a vocabulary of the data (``"diagnoses"``, ``"medications"``...).

    Returns:
        ``"code_counts/<vocabulary>"``; its value is float32 ``[V]``, the number of training
        visits containing each code.
    """
    return _build("code_counts", (vocabulary,))


def pair_counts(rows: str, cols: str) -> str:
    """Name of the visit co-occurrence counts of the codes of ``rows`` and ``cols``.

    Args:
        rows: vocabulary of the rows.
        cols: vocabulary of the columns (may equal ``rows``).

    Returns:
        ``"pair_counts/<rows>/<cols>"``; its value is float32 ``[V_rows, V_cols]``, entry
        ``[i, j]`` the number of training visits containing both code i of ``rows`` and
        code j of ``cols`` (each visit once; for ``rows == cols`` the diagonal equals
        :func:`code_counts`).
    """
    return _build("pair_counts", (rows, cols))


def _build(kind: str, vocabularies: tuple[str, ...]) -> str:
    name = _SEPARATOR.join((kind, *vocabularies))
    parse_statistic(name)  # refuse a vocabulary name that cannot round-trip (empty, with '/')
    return name


def parse_statistic(name: str) -> tuple[str, tuple[str, ...]]:
    """Split a statistic name into its kind and vocabularies.

    Args:
        name: a name built by :func:`code_counts` or :func:`pair_counts`.

    Returns:
        ``(kind, vocabularies)``, e.g. ``("pair_counts", ("diagnoses", "medications"))``.

    Raises:
        ValueError: ``name`` is not a string, has an unknown kind, the wrong number of
            vocabularies or an empty vocabulary; the message shows the expected forms.
    """
    forms = "'code_counts/<vocabulary>' or 'pair_counts/<rows>/<cols>'"
    if not isinstance(name, str):
        raise ValueError(f"a statistic name must be a string ({forms}), got {name!r}")
    kind, *vocabularies = name.split(_SEPARATOR)
    if kind not in STATISTIC_KINDS:
        raise ValueError(f"unknown statistic {name!r}: expected {forms} "
                         f"(kinds: {', '.join(STATISTIC_KINDS)})")
    expected = STATISTIC_KINDS[kind]
    if len(vocabularies) != expected or not all(v.strip() for v in vocabularies):
        raise ValueError(f"malformed statistic {name!r}: {kind} takes {expected} non-empty "
                         f"vocabulary name{'s' if expected > 1 else ''} ({forms})")
    return kind, tuple(vocabularies)


def statistic_shape(name: str, vocab_sizes: Mapping[str, int]) -> tuple[int, ...]:
    """Shape of statistic ``name`` for data with ``vocab_sizes``.

    Args:
        name: a statistic name.
        vocab_sizes: codes per vocabulary of the data.

    Returns:
        ``(V,)`` for code counts, ``(V_rows, V_cols)`` for pair counts.

    Raises:
        ValueError: malformed name, or a vocabulary the data lacks (the message names it
            and the vocabularies the data has).
    """
    _, vocabularies = parse_statistic(name)
    return tuple(_vocab_size(vocab_sizes, vocabulary, name) for vocabulary in vocabularies)


def _vocab_size(vocab_sizes: Mapping[str, int], vocabulary: str, name: str) -> int:
    if vocabulary not in vocab_sizes:
        raise ValueError(f"statistic {name!r}: the data has no {vocabulary!r} vocabulary "
                         f"(it has: {', '.join(vocab_sizes) or 'none'})")
    return int(vocab_sizes[vocabulary])


def compute_statistic(data: EHRData, visits: np.ndarray, name: str) -> np.ndarray:
    """Compute statistic ``name`` over the given visits of ``data``.

    Args:
        data: the dataset.
        visits: ``[n]`` global visit indices to count (the training visits of a split:
            ``visits_of(data, split.train)``); an index listed twice counts twice.
        name: a statistic name (:func:`code_counts`, :func:`pair_counts`).

    Returns:
        float32 ``[V]`` (code counts) or ``[V_rows, V_cols]`` (pair counts).

    Raises:
        ValueError: malformed name, or a vocabulary ``data`` lacks.
    """
    kind, vocabularies = parse_statistic(name)
    sizes = {vocabulary: len(v) for vocabulary, v in data.vocabularies.items()}
    for vocabulary in vocabularies:
        _vocab_size(sizes, vocabulary, name)
    visits = np.asarray(visits, dtype=np.int64).reshape(-1)
    if kind == "code_counts":
        return _code_counts(data, visits, vocabularies[0])
    return _pair_counts(data, visits, vocabularies[0], vocabularies[1])


def statistics_source(data: EHRData, visits: np.ndarray) -> Callable[[str], np.ndarray]:
    """A :attr:`DataSchema.statistics_source <medtoolkit.components.schema.DataSchema.statistics_source>`
    counting over ``visits`` of ``data``.

    Nothing is computed until the returned function is called (the schema calls it once
    per statistic a component requires).

    Args:
        data: the dataset.
        visits: ``[n]`` global visit indices to count: a split's training visits (a
            copy is kept).

    Returns:
        ``name -> compute_statistic(data, visits, name)``.
    """
    chosen = np.array(visits, dtype=np.int64).reshape(-1)

    def source(name: str) -> np.ndarray:
        return compute_statistic(data, chosen, name)

    return source


def _lengths(data: EHRData, vocabulary: str, visits: np.ndarray) -> np.ndarray:
    """``[n]`` number of codes of each visit in ``vocabulary``."""
    bounds = data.code_offsets[vocabulary]
    return (bounds[visits + 1] - bounds[visits]).astype(np.int64)


def _blocks(cost: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """``(start, end)`` ranges of consecutive items whose summed ``cost`` stays within
    ``budget`` (a single item over the budget gets a block of its own).

    Args:
        cost: ``[n]`` non-negative cost of each item.
        budget: the most cost per block.
    """
    total = np.cumsum(cost)
    blocks: list[tuple[int, int]] = []
    start, done = 0, 0
    while start < len(cost):
        end = int(np.searchsorted(total, done + budget, side="right"))
        end = max(end, start + 1)
        blocks.append((start, end))
        done = int(total[end - 1])
        start = end
    return blocks


def _unique_codes(data: EHRData, vocabulary: str, visits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct codes of each visit in ``vocabulary``, sorted by visit.

    Args:
        data: the dataset.
        vocabulary: the vocabulary.
        visits: ``[n]`` global visit indices (one block).

    Returns:
        ``(rows, codes)``, both ``[m]`` int64: the block row (0..n-1) and the code of each
        distinct (visit, code) entry, ordered by row, then code.
    """
    size = len(data.vocabularies[vocabulary])
    bounds = data.code_offsets[vocabulary]
    starts = bounds[visits]
    lengths = bounds[visits + 1] - starts
    codes = _gather_ranges(data.codes[vocabulary], starts, lengths).astype(np.int64)
    rows = np.repeat(np.arange(len(visits), dtype=np.int64), lengths)
    keys = np.sort(rows * size + codes)  # (np.unique hashes, much slower on large blocks)
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys
    return keys // size, keys % size


def _code_counts(data: EHRData, visits: np.ndarray, vocabulary: str) -> np.ndarray:
    """float32 ``[V]``: visits (of ``visits``) containing each code of ``vocabulary``."""
    size = len(data.vocabularies[vocabulary])
    counts = np.zeros(size, dtype=np.int64)
    for start, end in _blocks(_lengths(data, vocabulary, visits), MAX_BLOCK_PAIRS):
        _, codes = _unique_codes(data, vocabulary, visits[start:end])
        counts += np.bincount(codes, minlength=size)
    return counts.astype(np.float32)


def _pair_counts(data: EHRData, visits: np.ndarray, rows: str, cols: str) -> np.ndarray:
    """float32 ``[V_rows, V_cols]``: visits containing code i of ``rows`` and j of ``cols``."""
    n_rows, n_cols = len(data.vocabularies[rows]), len(data.vocabularies[cols])
    counts = np.zeros(n_rows * n_cols, dtype=np.int64)
    cost = _lengths(data, rows, visits) * _lengths(data, cols, visits)
    for start, end in _blocks(cost, max(MAX_BLOCK_PAIRS, n_rows * n_cols)):
        block = visits[start:end]
        row_visit, row_code = _unique_codes(data, rows, block)
        col_visit, col_code = _unique_codes(data, cols, block)
        per_visit = np.bincount(col_visit, minlength=len(block))  # distinct column codes per visit
        first = np.cumsum(per_visit) - per_visit  # where each visit's column codes start
        repeat = per_visit[row_visit]  # each row entry pairs with every column code of its visit
        pair_row = np.repeat(row_code, repeat)
        within = np.arange(int(repeat.sum()), dtype=np.int64) - np.repeat(np.cumsum(repeat) - repeat, repeat)
        pair_col = col_code[np.repeat(first[row_visit], repeat) + within]
        counts += np.bincount(pair_row * n_cols + pair_col, minlength=n_rows * n_cols)
    return counts.reshape(n_rows, n_cols).astype(np.float32)


__all__ = [
    "MAX_BLOCK_PAIRS",
    "STATISTIC_KINDS",
    "code_counts",
    "compute_statistic",
    "pair_counts",
    "parse_statistic",
    "statistic_shape",
    "statistics_source",
]
