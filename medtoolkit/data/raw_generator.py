"""Raw MIMIC-III shaped CSV tables of any size, for scale tests of the raw-table loaders.

:func:`write_mimic3_tables` writes ``ADMISSIONS``, ``DIAGNOSES_ICD``, ``PROCEDURES_ICD`` and
``PRESCRIPTIONS`` with the MIMIC-III column names and realistic values:

* **Admissions.** Patients have ``1 + NegativeBinomial`` admissions (MIMIC-III: about 1.3
  on average, most patients once). ``HADM_ID`` values are random 6-digit-or-wider numbers,
  so ordering by ``HADM_ID`` is *not* chronological (as in MIMIC-III); ``ADMITTIME`` and
  ``DISCHTIME`` are valid ``YYYY-MM-DD HH:MM:SS`` timestamps in the shifted years 2100-2200,
  increasing per patient. Categorical columns are drawn from the demo's admission rows.
* **Codes.** Every admission has two latent conditions. Each condition owns a Zipf-ranked
  set of diagnoses, procedures and drug products; a share of the rows of an admission
  comes from its conditions, the rest from a Zipf-like background. So diagnoses and
  drugs are correlated, and code popularity is skewed like the real tables.
  ICD-9 code strings (ranked by their demo frequency) and drug products (``DRUG``, ``NDC``,
  ``GSN``, dose columns, ...) come from the package's built-in demo copy
  (:func:`medtoolkit.resources.demo_path`) when it is installed; otherwise synthetic
  ICD-9-shaped strings and NDCs are used.
* **NDCs.** Most prescription rows carry an 11-digit NDC that the shipped NDC -> ATC map
  (:class:`medtoolkit.knowledge.DrugMapper`) translates: the demo products it maps plus one
  product per NDC of the shipped map (text columns of a random demo product, ``GSN`` and
  ``NDC`` from the map - names and NDC may disagree; loaders use the NDC). A share
  ``zero_ndc_share`` carries ``0`` (unknown) and a share ``unmapped_ndc_share`` carries a
  real demo NDC the map does not know.

Everything is vectorised: rows are drawn with numpy, and each chunk of rows is rendered
to CSV bytes at once (fields are laid out in a padded ``[rows, width]`` byte matrix and the
padding is masked out), so 5,000,000 prescription rows are written in seconds with memory
bounded by the chunk size.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

#: column names of the four tables (MIMIC-III 1.4)
ADMISSIONS_COLUMNS = (
    "ROW_ID", "SUBJECT_ID", "HADM_ID", "ADMITTIME", "DISCHTIME", "DEATHTIME", "ADMISSION_TYPE",
    "ADMISSION_LOCATION", "DISCHARGE_LOCATION", "INSURANCE", "LANGUAGE", "RELIGION", "MARITAL_STATUS",
    "ETHNICITY", "EDREGTIME", "EDOUTTIME", "DIAGNOSIS", "HOSPITAL_EXPIRE_FLAG", "HAS_CHARTEVENTS_DATA",
)
ICD_COLUMNS = ("ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE")
PRESCRIPTIONS_COLUMNS = (
    "ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTDATE", "ENDDATE", "DRUG_TYPE", "DRUG",
    "DRUG_NAME_POE", "DRUG_NAME_GENERIC", "FORMULARY_DRUG_CD", "GSN", "NDC", "PROD_STRENGTH",
    "DOSE_VAL_RX", "DOSE_UNIT_RX", "FORM_VAL_DISP", "FORM_UNIT_DISP", "ROUTE",
)
#: the product columns of PRESCRIPTIONS (everything after ENDDATE), taken together from one demo row
_PRODUCT_COLUMNS = PRESCRIPTIONS_COLUMNS[6:]
#: the categorical columns of ADMISSIONS taken together from one demo row
_ADMISSION_TAIL = ADMISSIONS_COLUMNS[6:14]

#: MIMIC-III ratios: prescriptions, diagnoses and procedures per admission (full release)
PRESCRIPTIONS_PER_ADMISSION = 70.0
DIAGNOSES_PER_ADMISSION = 11.0
PROCEDURES_PER_ADMISSION = 4.0
#: extra admissions per patient beyond the first (negative binomial mean and shape)
_EXTRA_ADMISSIONS_MEAN, _EXTRA_ADMISSIONS_SHAPE = 0.35, 0.3
_CONDITIONS, _CONDITION_SHARE = 64, 0.7
_CONDITION_DIAGNOSES, _CONDITION_PROCEDURES, _CONDITION_PRODUCTS = 40, 20, 30
#: rows rendered per chunk (bounds memory: about chunk x row width x 3 bytes)
_CHUNK_ROWS = 200_000
_SECONDS_PER_DAY = 86_400
_EPOCH_2100 = int(np.datetime64("2100-01-01T00:00:00", "s").astype(np.int64))


# ---------------------------------------------------------------------------- byte rendering
@dataclass
class _Field:
    """One CSV field for every row of a chunk: a ``[n, w]`` uint8 matrix and ``[n]`` lengths."""

    matrix: np.ndarray
    lengths: np.ndarray


def _text_table(values: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``[V, w]`` uint8 padded matrix and ``[V]`` lengths of a small list of byte strings."""
    width = max([len(v) for v in values] + [1])
    array = np.array(list(values), dtype=f"S{width}")
    return array.view(np.uint8).reshape(len(values), width), np.array([len(v) for v in values], dtype=np.int64)


def _lookup(table: tuple[np.ndarray, np.ndarray], index: np.ndarray) -> _Field:
    """The field whose row ``i`` is entry ``index[i]`` of a :func:`_text_table`."""
    return _Field(table[0][index], table[1][index])


def _integers(values: np.ndarray, blank: np.ndarray | None = None) -> _Field:
    """Decimal digits of non-negative integers (rows where ``blank`` is true are empty)."""
    values = np.asarray(values, dtype=np.int64)
    n_digits = np.ones(len(values), dtype=np.int64)
    limit = 10
    top = int(values.max(initial=0))
    while limit <= top:
        n_digits += values >= limit
        limit *= 10
    width = int(n_digits.max(initial=1))
    exponent = np.maximum(n_digits[:, None] - 1 - np.arange(width), 0)
    digits = (values[:, None] // (10 ** exponent)) % 10 + ord("0")
    lengths = n_digits if blank is None else np.where(blank, 0, n_digits)
    return _Field(digits.astype(np.uint8), lengths)


def _timestamps(seconds: np.ndarray, blank: np.ndarray | None = None) -> _Field:
    """``YYYY-MM-DD HH:MM:SS`` of integer seconds since 1970 (rows where ``blank`` is true are empty)."""
    text = np.datetime_as_string(np.asarray(seconds, dtype="datetime64[s]"), unit="s").astype("S19")
    matrix = text.view(np.uint8).reshape(len(seconds), 19).copy()
    matrix[:, 10] = ord(" ")
    lengths = np.full(len(seconds), 19, dtype=np.int64)
    if blank is not None:
        lengths[blank] = 0
    return _Field(matrix, lengths)


def _render(pieces: Sequence[bytes | _Field], n_rows: int) -> bytes:
    """CSV bytes of ``n_rows`` rows made of constant pieces (separators) and per-row fields."""
    widths = [len(p) if isinstance(p, bytes) else p.matrix.shape[1] for p in pieces]
    total = sum(widths)
    block = np.empty((n_rows, total), dtype=np.uint8)
    keep = np.empty((n_rows, total), dtype=bool)
    column = 0
    for piece, width in zip(pieces, widths):
        if isinstance(piece, bytes):
            block[:, column:column + width] = np.frombuffer(piece, dtype=np.uint8)
            keep[:, column:column + width] = True
        else:
            block[:, column:column + width] = piece.matrix
            keep[:, column:column + width] = np.arange(width) < piece.lengths[:, None]
        column += width
    return block[keep].tobytes()


def _csv_line(values: Sequence[str]) -> bytes:
    """One CSV-quoted line (no newline) of a few strings, as the MIMIC files quote them."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue().encode("utf-8")


# ---------------------------------------------------------------------------- sources
@dataclass
class _Sources:
    """Code strings and pre-rendered product / admission columns the tables are drawn from."""

    diagnoses: list[str]
    procedures: list[str]
    products: list[bytes]
    product_ndc: list[str]
    product_kind: np.ndarray  # 0 mappable, 1 unmappable, 2 NDC 0
    admission_tails: list[bytes]
    admission_diagnoses: list[bytes]
    origin: str


def _demo_directory() -> Path | None:
    """The package's built-in MIMIC-III demo copy, or None when not installed."""
    try:
        from medtoolkit.resources import demo_path  # type: ignore[attr-defined]

        path = Path(demo_path("mimic3"))
    except Exception:  # noqa: BLE001 - any failure means "no built-in copy"
        return None
    return path if path.is_dir() else None


def _find(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.csv", f"{stem}.csv.gz", f"{stem.lower()}.csv", f"{stem.lower()}.csv.gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_rows(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:  # type: ignore[operator]
        return [{k.upper(): (v or "") for k, v in row.items() if k} for row in csv.DictReader(handle)]


def _mappable(ndcs: Sequence[str]) -> np.ndarray | None:
    """Which NDCs the shipped NDC -> ATC map translates (None when the map is not usable)."""
    try:
        import pandas as pd

        from medtoolkit.knowledge import DrugMapper

        mapped = DrugMapper().map_ndc(pd.Series(list(ndcs), dtype="string"))
        return mapped.notna().to_numpy(dtype=bool)
    except Exception:  # noqa: BLE001 - the map is optional here (not shipped / not importable)
        return None


def _map_products(exclude: set[str]) -> list[tuple[str, str]]:
    """``(gsn, ndc)`` pairs of the shipped NDC -> ATC map that the mapper translates (sorted)."""
    try:
        import pandas as pd

        from medtoolkit.knowledge import DrugMapper
        from medtoolkit.resources import RESOURCE_DIR

        table = pd.read_csv(RESOURCE_DIR / "drug_knowledge" / "gsn_atc_ndc_mapping.csv.gz", dtype=str)
        table = table.dropna(subset=["ndc"]).drop_duplicates("ndc").sort_values("ndc")
        table = table[table["ndc"].str.fullmatch(r"\d{11}") & ~table["ndc"].isin(exclude)]
        mapped = DrugMapper().map_ndc(table["ndc"].astype("string")).notna().to_numpy(dtype=bool)
        table = table[mapped]
        return list(zip(table["gsn"].fillna("").astype(str), table["ndc"].astype(str)))
    except Exception:  # noqa: BLE001 - the map is optional here
        return []


def _synthetic_sources(rng: np.random.Generator) -> _Sources:
    """ICD-9-shaped codes and NDC products when no demo copy is available."""
    diagnoses = sorted({f"{int(x):05d}" for x in rng.integers(100, 99_999, 3000)})[:2000]
    diagnoses += [f"V{int(x):04d}" for x in rng.integers(100, 9_999, 200)]
    procedures = sorted({f"{int(x):04d}" for x in rng.integers(100, 9_999, 1500)})[:1000]
    products, ndcs, kinds = [], [], []
    for i in range(400):
        kind = 2 if i % 40 == 0 else (1 if i % 25 == 0 else 0)
        ndc = "0" if kind == 2 else f"{int(rng.integers(1, 99_999)):05d}{int(rng.integers(0, 9_999)):04d}{i % 100:02d}"
        products.append(_csv_line(["MAIN", f"Drug {i}", f"Drug {i}", f"Drug {i}", f"DRUG{i}", f"{i:06d}", ndc,
                                   "10 mg Tab", "10", "mg", "1", "TAB", "PO"]))
        ndcs.append(ndc)
        kinds.append(kind)
    return _Sources(
        diagnoses=diagnoses, procedures=procedures, products=products, product_ndc=ndcs,
        product_kind=np.array(kinds), admission_tails=[_csv_line(["EMERGENCY", "EMERGENCY ROOM ADMIT", "HOME",
                                                                   "Medicare", "ENGL", "CATHOLIC", "MARRIED",
                                                                   "WHITE"])],
        admission_diagnoses=[_csv_line(["SEPSIS"])], origin="synthetic codes",
    )


def _sources(rng: np.random.Generator, directory: Path | None) -> _Sources:
    """Read code lists and product rows from a MIMIC-III demo directory (or synthesise them)."""
    if directory is None:
        return _synthetic_sources(rng)
    paths = {stem: _find(directory, stem) for stem in ("ADMISSIONS", "DIAGNOSES_ICD", "PROCEDURES_ICD",
                                                       "PRESCRIPTIONS")}
    if any(p is None for p in paths.values()):
        return _synthetic_sources(rng)
    diagnoses_rows = _read_rows(paths["DIAGNOSES_ICD"])  # type: ignore[arg-type]
    procedure_rows = _read_rows(paths["PROCEDURES_ICD"])  # type: ignore[arg-type]
    prescription_rows = _read_rows(paths["PRESCRIPTIONS"])  # type: ignore[arg-type]
    admission_rows = _read_rows(paths["ADMISSIONS"])  # type: ignore[arg-type]

    def by_frequency(values: list[str]) -> list[str]:
        unique, counts = np.unique(np.array([v for v in values if v.strip()]), return_counts=True)
        return [str(u) for u in unique[np.argsort(-counts, kind="stable")]]

    diagnoses = by_frequency([r.get("ICD9_CODE", "") for r in diagnoses_rows])
    procedures = by_frequency([r.get("ICD9_CODE", "") for r in procedure_rows])
    # one product (all columns after ENDDATE) per distinct NDC, keeping the first demo row
    seen: dict[str, list[str]] = {}
    for row in prescription_rows:
        ndc = row.get("NDC", "").strip()
        if ndc == "" or (ndc != "0" and (len(ndc) != 11 or not ndc.isdigit())):
            continue
        key = ndc if ndc != "0" else f"0:{row.get('DRUG', '')}"
        if key not in seen:
            seen[key] = [row.get(c, "") for c in _PRODUCT_COLUMNS]
    if not seen:
        return _synthetic_sources(rng)
    products = list(seen.values())
    ndcs = [k if not k.startswith("0:") else "0" for k in seen]
    mappable = _mappable(ndcs)
    kinds = np.where(np.array(ndcs) == "0", 2, 0)
    if mappable is not None:
        kinds = np.where((kinds == 0) & ~mappable, 1, kinds)
        # the demo's NDCs are mostly unknown to the shipped map: add the map's own NDCs as
        # products (text columns of a random demo product, GSN and NDC from the map)
        extra = _map_products(set(ndcs))
        if extra:
            templates = [products[i] for i in np.flatnonzero(kinds != 2)]
            ndc_at = _PRODUCT_COLUMNS.index("NDC")
            gsn_at = _PRODUCT_COLUMNS.index("GSN")
            for (gsn, ndc), template in zip(extra, (templates[i] for i in rng.integers(0, len(templates), len(extra)))):
                values = list(template)
                values[gsn_at], values[ndc_at] = gsn, ndc
                products.append(values)
                ndcs.append(ndc)
            kinds = np.concatenate((kinds, np.zeros(len(extra), dtype=kinds.dtype)))
    else:  # no map importable: call a fixed 5 % of the real NDCs "unmappable" for the mix below
        real = np.flatnonzero(kinds == 0)
        kinds[real[rng.random(len(real)) < 0.05]] = 1
    tails = sorted({_csv_line([r.get(c, "") for c in _ADMISSION_TAIL]) for r in admission_rows})
    texts = sorted({_csv_line([r.get("DIAGNOSIS", "")]) for r in admission_rows})
    return _Sources(
        diagnoses=diagnoses or ["4019"], procedures=procedures or ["3893"], products=[_csv_line(v) for v in products],
        product_ndc=ndcs, product_kind=kinds, admission_tails=tails or [b""],
        admission_diagnoses=texts or [b""], origin=str(directory),
    )


# ---------------------------------------------------------------------------- drawing
def _zipf(n: int, exponent: float = 1.0) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def _cdf_rows(rows: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(rows, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    return cdf


def _sample_grouped(rng: np.random.Generator, cdf: np.ndarray, group: np.ndarray) -> np.ndarray:
    """One categorical draw per element of ``group`` from row ``cdf[group]`` (vectorised)."""
    n_groups, width = cdf.shape
    stacked = (cdf + np.arange(n_groups)[:, None]).ravel()
    position = np.searchsorted(stacked, group + rng.random(len(group)), side="right")
    return np.minimum(position - group * width, width - 1)


def _condition_cdf(rng: np.random.Generator, size: int, per_condition: int, exponent: float = 1.0) -> np.ndarray:
    """``[K + 1, size]`` CDFs: row ``k < K`` is condition ``k`` (Zipf over its own codes), row K the background."""
    background = _zipf(size, exponent)  # the sources are sorted by demo frequency
    rows = np.zeros((_CONDITIONS + 1, size))
    take = min(per_condition, size)
    weights = _zipf(take, 1.0)
    for k in range(_CONDITIONS):
        rows[k, rng.choice(size, size=take, replace=False, p=background)] = weights
    rows[_CONDITIONS] = background
    return _cdf_rows(rows)


def _counts(rng: np.random.Generator, n: int, mean: float, shape: float) -> np.ndarray:
    """``[n]`` counts ``1 + NegativeBinomial`` with the given mean."""
    extra = max(mean - 1.0, 1e-9)
    return 1 + rng.negative_binomial(shape, shape / (shape + extra), size=n)


def _exact_counts(rng: np.random.Generator, total: int, mean: float, shape: float) -> np.ndarray:
    """Per-admission prescription counts summing to exactly ``total``."""
    batches, drawn = [], 0
    while drawn < total:
        batch = _counts(rng, int(math.ceil((total - drawn) / mean * 1.1)) + 4, mean, shape)
        batches.append(batch)
        drawn += int(batch.sum())
    counts = np.concatenate(batches)
    cumulative = np.cumsum(counts)
    last = int(np.searchsorted(cumulative, total))
    counts = counts[: last + 1].copy()
    counts[-1] -= int(cumulative[last] - total)
    return counts


def _row_codes(rng: np.random.Generator, admission_of_row: np.ndarray, conditions: np.ndarray,
               cdf: np.ndarray) -> np.ndarray:
    """One code per row: from one of the admission's two conditions or from the background."""
    from_condition = rng.random(len(admission_of_row)) < _CONDITION_SHARE
    which = conditions[admission_of_row, rng.integers(0, 2, len(admission_of_row))]
    group = np.where(from_condition, which, _CONDITIONS)
    return _sample_grouped(rng, cdf, group)


def _open(path: Path, compress: bool) -> IO[bytes]:
    return gzip.open(path, "wb", compresslevel=1) if compress else open(path, "wb")


# ---------------------------------------------------------------------------- entry point
def write_mimic3_tables(directory: Path, n_prescriptions: int, seed: int = 0, compress: bool = False,
                        *, zero_ndc_share: float = 0.03, unmapped_ndc_share: float = 0.03,
                        source: Path | None = None) -> dict[str, Any]:
    """Write MIMIC-III shaped ``ADMISSIONS``, ``DIAGNOSES_ICD``, ``PROCEDURES_ICD`` and ``PRESCRIPTIONS``.

    Sizes follow MIMIC-III's ratios: about ``n_prescriptions / 70`` admissions, 11 diagnoses
    and 4 procedures per admission, 1.3 admissions per patient. Same arguments and seed give
    identical files.

    Args:
        directory: output directory (created when missing); existing tables are overwritten.
        n_prescriptions: exact number of PRESCRIPTIONS rows (>= 1).
        seed: random seed.
        compress: write ``.csv.gz`` (gzip level 1) instead of ``.csv``.
        zero_ndc_share: share of prescription rows whose NDC is ``0`` (unknown).
        unmapped_ndc_share: share of prescription rows whose NDC the drug map does not know.
        source: a MIMIC-III demo directory to take codes and products from (default: the
            package's built-in demo copy, else synthetic codes).

    Returns:
        Counts: ``patients``, ``admissions``, ``diagnoses``, ``procedures``, ``prescriptions``,
        ``prescriptions_zero_ndc``, ``prescriptions_unmapped_ndc``, plus ``files``
        (table -> path), ``bytes`` (table -> file size) and ``source`` (where codes came from).

    Raises:
        ValueError: when ``n_prescriptions < 1`` or a share is outside ``[0, 1)``.
    """
    if n_prescriptions < 1:
        raise ValueError(f"n_prescriptions must be >= 1, got {n_prescriptions}")
    if not (0 <= zero_ndc_share < 1 and 0 <= unmapped_ndc_share < 1 and zero_ndc_share + unmapped_ndc_share < 1):
        raise ValueError("zero_ndc_share and unmapped_ndc_share must be in [0, 1) and sum below 1")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = _sources(rng, Path(source) if source is not None else _demo_directory())
    suffix = ".csv.gz" if compress else ".csv"
    files = {name: directory / f"{name}{suffix}" for name in
             ("ADMISSIONS", "DIAGNOSES_ICD", "PROCEDURES_ICD", "PRESCRIPTIONS")}

    # ---- admissions and patients
    per_admission = _exact_counts(rng, n_prescriptions, PRESCRIPTIONS_PER_ADMISSION, 2.0)
    n_admissions = len(per_admission)
    per_patient = _exact_counts(rng, n_admissions, 1.0 + _EXTRA_ADMISSIONS_MEAN, _EXTRA_ADMISSIONS_SHAPE)
    n_patients = len(per_patient)
    patient_of_admission = np.repeat(np.arange(n_patients), per_patient)
    subject_ids = 1 + np.arange(n_patients) * 3 + rng.integers(0, 3, n_patients)  # increasing, gappy
    id_space = max(100_000, 2 * n_admissions)
    hadm_ids = 100_000 + rng.choice(id_space, size=n_admissions, replace=False)  # random: not chronological
    # chronological times: a first admission in 2100-2190, later ones after exponential gaps
    first = np.repeat(_EPOCH_2100 + rng.integers(0, 90 * 365 * _SECONDS_PER_DAY, n_patients), per_patient)
    gaps = rng.exponential(300 * _SECONDS_PER_DAY, n_admissions).astype(np.int64) + _SECONDS_PER_DAY * 30
    starts = np.concatenate(([0], np.cumsum(per_patient)[:-1]))
    gaps[starts] = 0
    elapsed = np.cumsum(gaps)
    admit = first + elapsed - np.repeat(elapsed[starts], per_patient)
    length_of_stay = np.maximum(rng.lognormal(np.log(6 * _SECONDS_PER_DAY), 0.7, n_admissions), 3600).astype(np.int64)
    discharge = admit + length_of_stay
    died = rng.random(n_admissions) < 0.08
    last_of_patient = np.zeros(n_admissions, dtype=bool)
    last_of_patient[np.cumsum(per_patient) - 1] = True
    died &= last_of_patient
    conditions = rng.integers(0, _CONDITIONS, size=(n_admissions, 2))
    icustay = 200_000 + rng.choice(max(100_000, 2 * n_admissions), size=n_admissions, replace=False)
    in_icu = rng.random(n_admissions) < 0.9

    tails = _text_table(sources.admission_tails)
    texts = _text_table(sources.admission_diagnoses)
    with _open(files["ADMISSIONS"], compress) as handle:
        handle.write(",".join(ADMISSIONS_COLUMNS).encode() + b"\n")
        for lo in range(0, n_admissions, _CHUNK_ROWS):
            sl = slice(lo, min(lo + _CHUNK_ROWS, n_admissions))
            n = sl.stop - sl.start
            ed = rng.random(n) < 0.4
            handle.write(_render([
                _integers(np.arange(sl.start, sl.stop) + 1), b",", _integers(subject_ids[patient_of_admission[sl]]),
                b",", _integers(hadm_ids[sl]), b",", _timestamps(admit[sl]), b",", _timestamps(discharge[sl]), b",",
                _timestamps(discharge[sl], blank=~died[sl]), b",",
                _lookup(tails, rng.integers(0, len(sources.admission_tails), n)), b",",
                _timestamps(admit[sl] - 3 * 3600, blank=~ed), b",", _timestamps(admit[sl] + 1800, blank=~ed), b",",
                _lookup(texts, rng.integers(0, len(sources.admission_diagnoses), n)), b",",
                _integers(died[sl].astype(np.int64)), b",1\n",
            ], n))

    # ---- diagnoses and procedures (distinct codes per admission, SEQ_NUM 1..k)
    code_counts: dict[str, int] = {}
    for table, codes, mean, per_condition in (
        ("DIAGNOSES_ICD", sources.diagnoses, DIAGNOSES_PER_ADMISSION, _CONDITION_DIAGNOSES),
        ("PROCEDURES_ICD", sources.procedures, PROCEDURES_PER_ADMISSION, _CONDITION_PROCEDURES),
    ):
        cdf = _condition_cdf(rng, len(codes), per_condition)
        wanted = np.minimum(_counts(rng, n_admissions, mean, 3.0), len(codes))
        if table == "PROCEDURES_ICD":  # about 30 % of MIMIC-III admissions have no procedure
            wanted[rng.random(n_admissions) < 0.3] = 0
        admission_of_row = np.repeat(np.arange(n_admissions), wanted)
        drawn = _row_codes(rng, admission_of_row, conditions, cdf)
        keys = np.unique(admission_of_row * len(codes) + drawn)  # distinct per admission, sorted
        admission_of_row, code = keys // len(codes), keys % len(codes)
        order = np.lexsort((rng.random(len(keys)), admission_of_row))  # SEQ_NUM order is not code order
        admission_of_row, code = admission_of_row[order], code[order]
        per = np.bincount(admission_of_row, minlength=n_admissions)
        seq = np.arange(len(keys)) - np.repeat(np.cumsum(per) - per, per) + 1
        code_table = _text_table([c.encode("utf-8") for c in codes])
        with _open(files[table], compress) as handle:
            handle.write(",".join(ICD_COLUMNS).encode() + b"\n")
            for lo in range(0, len(keys), _CHUNK_ROWS):
                sl = slice(lo, min(lo + _CHUNK_ROWS, len(keys)))
                a = admission_of_row[sl]
                handle.write(_render([
                    _integers(np.arange(sl.start, sl.stop) + 1), b",", _integers(subject_ids[patient_of_admission[a]]),
                    b",", _integers(hadm_ids[a]), b",", _integers(seq[sl]), b",", _lookup(code_table, code[sl]),
                    b"\n"], sl.stop - sl.start))
        code_counts[table] = len(keys)

    # ---- prescriptions: products correlated with the admission's conditions
    kinds = sources.product_kind
    mappable = np.flatnonzero(kinds == 0)
    unmapped = np.flatnonzero(kinds == 1)
    zero = np.flatnonzero(kinds == 2)
    product_cdf = _condition_cdf(rng, len(mappable), _CONDITION_PRODUCTS, exponent=0.8)
    product_table = _text_table(sources.products)
    row_id = 0
    zero_rows = unmapped_rows = 0
    starts_of_admission = np.concatenate(([0], np.cumsum(per_admission)[:-1]))
    with _open(files["PRESCRIPTIONS"], compress) as handle:
        handle.write(",".join(PRESCRIPTIONS_COLUMNS).encode() + b"\n")
        for lo in range(0, n_prescriptions, _CHUNK_ROWS):
            hi = min(lo + _CHUNK_ROWS, n_prescriptions)
            n = hi - lo
            a = np.searchsorted(starts_of_admission, np.arange(lo, hi), side="right") - 1
            product = mappable[_row_codes(rng, a, conditions, product_cdf)] if len(mappable) else \
                np.zeros(n, dtype=np.int64)
            u = rng.random(n)
            if len(zero):
                is_zero = u < zero_ndc_share
                product[is_zero] = zero[rng.integers(0, len(zero), int(is_zero.sum()))]
                zero_rows += int(is_zero.sum())
            if len(unmapped):
                is_unmapped = (u >= zero_ndc_share) & (u < zero_ndc_share + unmapped_ndc_share)
                product[is_unmapped] = unmapped[rng.integers(0, len(unmapped), int(is_unmapped.sum()))]
                unmapped_rows += int(is_unmapped.sum())
            stay_days = np.maximum(length_of_stay[a] // _SECONDS_PER_DAY, 0)
            day = (admit[a] // _SECONDS_PER_DAY) + (rng.random(n) * (stay_days + 1)).astype(np.int64)
            start = day * _SECONDS_PER_DAY
            end = start + rng.integers(1, 4, n) * _SECONDS_PER_DAY
            handle.write(_render([
                _integers(np.arange(lo, hi) + 1), b",", _integers(subject_ids[patient_of_admission[a]]), b",",
                _integers(hadm_ids[a]), b",", _integers(icustay[a], blank=~in_icu[a]), b",", _timestamps(start),
                b",", _timestamps(end), b",", _lookup(product_table, product), b"\n",
            ], n))
            row_id = hi

    return {
        "patients": int(n_patients),
        "admissions": int(n_admissions),
        "diagnoses": int(code_counts["DIAGNOSES_ICD"]),
        "procedures": int(code_counts["PROCEDURES_ICD"]),
        "prescriptions": int(row_id),
        "prescriptions_zero_ndc": int(zero_rows),
        "prescriptions_unmapped_ndc": int(unmapped_rows),
        "files": {name: str(path) for name, path in files.items()},
        "bytes": {name: path.stat().st_size for name, path in files.items()},
        "source": sources.origin,
    }
