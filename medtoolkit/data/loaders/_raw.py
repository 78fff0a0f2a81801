"""Helpers shared by the raw-table loaders (``mimic3``, ``mimic4``, ``eicu``).

Private to :mod:`medtoolkit.data.loaders`; everything is vectorised pandas.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from medtoolkit.data.ehr import EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.report import DataReport

logger = logging.getLogger("medtoolkit.data")

#: prefixes that keep ICD revisions apart inside one vocabulary
ICD9_PREFIX, ICD10_PREFIX = "ICD9:", "ICD10:"


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def engine_field() -> Any:
    """The ``engine`` parameter of the raw loaders (left out of the cache key: same output)."""
    return Field(
        "arrow",
        description="CSV engine: 'arrow' (pyarrow's reader, the faster; falls back to pandas when pyarrow "
        "is missing) or 'pandas' (the former reader); both give the same data",
    )


def table_reader(
    paths: Mapping[str, Path], report: DataReport, dataset: str, progress: bool, engine: str = "pandas"
) -> Callable[..., pd.DataFrame]:
    """A ``read(name, columns, optional=())`` function over located tables.

    Each call reads one table with :func:`~medtoolkit.data.tables.read_table` (drops counted
    in ``report``; ``engine`` as there) and adds every absent optional column as blanks.
    """
    from medtoolkit.data.tables import read_table

    def read(name: str, columns: dict[str, str], optional: tuple[str, ...] = ()) -> pd.DataFrame:
        if progress:
            logger.info("%s: reading %s", dataset, paths[name])
        frame = read_table(paths[name], columns, optional=optional, report=report, engine=engine)
        for column in optional:
            if column not in frame.columns:
                frame[column] = ""
        return frame

    return read


def knowledge_resources() -> list[Path]:
    """Shipped drug-knowledge files whose content changes a build (hashed into cache keys)."""
    from medtoolkit.knowledge._resources import RESOURCE_DIR

    return sorted(p for p in Path(RESOURCE_DIR).glob("*") if p.is_file() and not p.name.startswith("LICENSE"))


def dataset_name(source: str, directory: str | Path | None) -> str:
    """The name of a raw-table dataset (``EHRData.name``, shown in reports and ``data info``).

    Args:
        source: the loader's source name (``"mimic3"``, ``"mimic4"``, ``"eicu"``).
        directory: the user's table directory, or None for the shipped demo.

    Returns:
        ``"<source>-demo"`` for the shipped demo, ``"<source>:<directory name>"`` otherwise.
    """
    if directory is None:
        return f"{source}-demo"
    path = Path(directory)
    return f"{source}:{path.name or path.resolve().name}"  # root=. is named after the working directory


def cached_raw_build(
    params: BaseModel,
    loader: str,
    loader_version: int,
    inputs: Sequence[Path],
    build: Callable[[], EHRData],
    unhashed: Sequence[str] = (),
    name: str | None = None,
) -> EHRData:
    """Load a raw-table dataset through the cache (see :func:`medtoolkit.data.cache.cached_build`).

    The key covers the input tables, the shipped drug-knowledge files, the loader name and
    version, and every parameter except ``root``, ``cache``, ``cache_dir``, ``engine`` (the CSV
    engines give the same data) and ``unhashed`` (parameters naming paths whose files are
    already in ``inputs``).

    Args:
        params: the loader's validated params (``cache`` and ``cache_dir`` are read from it).
        loader: registered name of the loader.
        loader_version: bumped when the loader's output changes for the same inputs.
        inputs: the table files read.
        build: builds the dataset on a cache miss.
        unhashed: further parameter names left out of the options key.
        name: the dataset's name, set after the cache lookup: ``root`` is not in the key, so
            a cached entry may have been built from another directory with the same tables.
    """
    from medtoolkit.data.cache import cached_build

    skipped = {"root", "cache", "cache_dir", "cache_mmap", "engine", *unhashed}
    options = {
        "loader": loader,
        "loader_version": loader_version,
        **{k: v for k, v in params.model_dump(mode="json").items() if k not in skipped},
    }
    data = cached_build(
        inputs=[*inputs, *knowledge_resources()],
        options=options,
        build=build,
        cache_dir=getattr(params, "cache_dir"),
        enabled=getattr(params, "cache"),
        mmap=getattr(params, "cache_mmap", True),
    )
    if name is not None:
        data.name = name
    return data


def file_line(frame: pd.DataFrame, position: int) -> int:
    """1-based line in its csv file of the row at ``position`` (header = line 1).

    ``read_table`` returns frames indexed by each row's line number in the file.
    """
    return int(frame.index[position])


def record_coverage(
    report: DataReport,
    step: str,
    mapped: pd.Series,
    codes: pd.Series,
    source: str = "",
) -> None:
    """Record row and distinct-code coverage of one mapping step.

    Args:
        report: where the coverage goes.
        step: name of the mapping step (``"prescriptions: NDC -> ATC3"``).
        mapped: per offered row, True when the row received an ATC code.
        codes: per offered row, the source code offered (blank rows count as rows, not codes).
        source: the table mapped.
    """
    offered = codes.astype("string").fillna("")
    present = offered != ""
    report.coverage(
        step,
        rows_in=len(offered),
        rows_mapped=int(mapped.sum()),
        codes_in=int(offered[present].nunique()),
        codes_mapped=int(offered[present & mapped.to_numpy()].nunique()),
        source=source,
    )


def examples(values: pd.Series, limit: int = 5) -> list[str]:
    """The ``limit`` most frequent values (ties in first-seen order), as strings."""
    if values.empty:
        return []
    counts = values.astype("string").fillna("<NA>").value_counts(sort=True)
    return [str(v) for v in counts.index[:limit]]


def drug_knowledge_factory(atc_level: int) -> Callable[[list[str]], DrugKnowledge]:
    """``med_codes -> DrugKnowledge`` for ``assemble_ehr`` (shipped ATC3 DDI pairs, SMILES)."""
    from medtoolkit.knowledge import build_drug_knowledge

    return partial(build_drug_knowledge, atc_level=atc_level)


def prefixed(codes: pd.Series, is_icd10: pd.Series) -> pd.Series:
    """``ICD9:<code>`` / ``ICD10:<code>`` (vectorised)."""
    prefix = pd.Series(ICD9_PREFIX, index=codes.index, dtype="string").mask(is_icd10.to_numpy(), ICD10_PREFIX)
    return prefix + codes.astype("string")


def missing_message(directory: Path, names: Sequence[str], what: str) -> str:
    """Error text for missing tables, listing what the directory holds."""
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    return (
        f"{what}: table(s) {', '.join(names)} not found in {directory} (as .csv or .csv.gz, any case); "
        f"files there: {', '.join(present[:20]) or 'none'}"
    )


def raw_root(root: str | Path | None, demo: str) -> Path:
    """The user's data root (``~`` expanded), or the shipped demo tables ``demo`` when None."""
    if root is not None:
        return Path(root).expanduser()
    from medtoolkit.resources import demo_path

    return Path(demo_path(demo))


def locate_tables(
    directory: Path, required: Sequence[str], optional: Sequence[str], what: str
) -> dict[str, Path]:
    """Find each table in ``directory`` (:func:`~medtoolkit.data.tables.find_table`).

    Args:
        directory: folder holding the tables.
        required: table stems that must exist.
        optional: table stems that are used when present.
        what: source name for the error message.

    Returns:
        ``{stem: path}`` for the required tables and the optional ones present.

    Raises:
        FileNotFoundError: naming every missing required table and the files that are there.
    """
    from medtoolkit.data.tables import find_table

    paths: dict[str, Path] = {}
    missing: list[str] = []
    for name in [*required, *optional]:
        try:
            paths[name] = Path(find_table(directory, name))
        except FileNotFoundError:
            if name not in optional:
                missing.append(name)
    if missing:
        raise FileNotFoundError(missing_message(directory, missing, what))
    return paths


def icd_zero_repairs(codes: pd.Series, known: pd.Series) -> dict[str, str]:
    """Codes that lost their leading zeros, each with the one dictionary code it pads to.

    A spreadsheet round trip turns the ICD-9 code ``0389`` into ``389``. A code is taken to
    have lost its zeros when it is all digits (after an optional ``ICD9:``-style prefix), is
    absent from ``known``, and exactly one of its zero-padded forms (``0389``, ``00389``...,
    up to the longest dictionary code) is in ``known``. Codes with two padded matches are left
    out (ambiguous).

    Args:
        codes: the codes as read (blank values are ignored).
        known: the dictionary's codes, in the same spelling (same prefix) as ``codes``.

    Returns:
        ``{stripped code: dictionary code}``.
    """
    dictionary = set(known.astype(str))
    present = pd.Series(codes.astype(str).unique())
    unknown = present[(present != "") & ~present.isin(dictionary)]
    parts = unknown.str.extract(r"^(?P<prefix>(?:[^:]*:)?)(?P<body>\d+)$").dropna()
    bodies = pd.Series(sorted(dictionary)).str.extract(r"^(?:[^:]*:)?(\d+)$")[0].dropna()
    longest = int(bodies.str.len().max()) if not bodies.empty else 0
    repairs: dict[str, str] = {}
    for code, prefix, body in zip(unknown[parts.index], parts["prefix"], parts["body"]):
        matches = [
            f"{prefix}{'0' * width}{body}" for width in range(1, longest - len(body) + 1)
            if f"{prefix}{'0' * width}{body}" in dictionary
        ]
        if len(matches) == 1:
            repairs[code] = matches[0]
    return repairs


def check_icd_zeros(
    codes: pd.Series, known: pd.Series | None, report: DataReport, step: str, source: str, repair: bool,
    dictionary_name: str,
) -> pd.Series:
    """Detect codes that lost their leading zeros, record them in ``report``, repair on request.

    Args:
        codes: the codes as read.
        known: the dictionary's codes (same spelling as ``codes``), or None when the
            dictionary table is absent (a note says the check was skipped).
        report: receives a :class:`~medtoolkit.data.report.Finding` (and a logged warning).
        step: the finding's step name (``"DIAGNOSES_ICD.csv: ICD9_CODE"``).
        source: the file the codes came from.
        repair: replace each stripped code by its dictionary code; otherwise keep it as written.
        dictionary_name: the dictionary table, for messages.

    Returns:
        ``codes``, repaired when ``repair`` is True.
    """
    if known is None:
        report.note(
            f"{source}: no {dictionary_name} table, so ICD codes that lost their leading zeros "
            "(spreadsheet round trip: 0389 -> 389) cannot be detected"
        )
        return codes
    repairs = icd_zero_repairs(codes, known)
    if not repairs:
        return codes
    text = codes.astype(str)
    hit = text.isin(list(repairs))
    ordered = examples(text[hit])
    action = "repaired" if repair else "kept"
    what = (
        "replaced by the dictionary code" if repair
        else "kept as written (set repair_icd_zeros: true to restore the zeros)"
    )
    report.finding(
        step, rows=int(hit.sum()), codes=len(repairs),
        message=f"ICD codes absent from {dictionary_name} that match a dictionary code once padded with "
                f"leading zeros (lost in a spreadsheet round trip?); {what}",
        action=action, source=source, examples=[f"{code} -> {repairs[code]}" for code in ordered],
    )
    return codes.mask(hit.to_numpy(), text.map(repairs)) if repair else codes
