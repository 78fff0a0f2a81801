"""NDC -> (RXCUI ->) ATC, GSN -> ATC and drug name -> ATC, with a coverage record per call.

Two NDC sources:

* ``"shipped"`` (default): ``gsn_atc_ndc_mapping.csv.gz`` (MIT, ETHOS maps) shipped with the
  package, NDC11 -> ATC7.
* ``"rxnorm"``: SafeDrug's route, NDC11 -> RXCUI (``ndc2rxnorm_mapping.txt``, a Python dict
  literal read with :func:`ast.literal_eval`) -> ATC4 (``ndc2atc_level4.zip``). These files carry
  no licence and are never shipped: pass the directory that holds them as ``map_dir``.

GSN (MIMIC-IV ``prescriptions.gsn``) and drug names (e.g. eICU ``drugname``) always use the
shipped maps.

Ambiguity: when one key (NDC, GSN, name) maps to several ATC codes, the code at the requested
level that occurs in the most map rows wins; ties go to the alphabetically smallest code. The
RxNorm route instead keeps the first row per RXCUI in file order, exactly as SafeDrug does
(this drops the other ATC classes of multi-class drugs; reference notes pitfall 8).
"""

from __future__ import annotations

import ast
import functools
import io
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from medtoolkit.knowledge._resources import resource_path
from medtoolkit.knowledge.ndc import normalize_ndc_counted

__all__ = ["ATC_LEVEL_LENGTHS", "DrugMapper", "MappingCoverage", "atc_truncate"]

#: number of characters of an ATC code at each level (L1 ``N``, L2 ``N02``, L3 ``N02B``,
#: L4 ``N02BE``, L5 ``N02BE01``)
ATC_LEVEL_LENGTHS: dict[int, int] = {1: 1, 2: 3, 3: 4, 4: 5, 5: 7}

RXNORM_DICT_FILE = "ndc2rxnorm_mapping.txt"
RXNORM_ATC_FILE = "ndc2atc_level4.zip"


@dataclass(frozen=True)
class MappingCoverage:
    """Coverage of one mapping call.

    Attributes:
        step: what was mapped (e.g. ``"ndc->atc3 (shipped)"``).
        rows_in: input rows (all of them, blank included).
        rows_mapped: rows with a code after mapping.
        codes_in: distinct usable input codes (after normalisation; blanks excluded).
        codes_mapped: distinct input codes that mapped.
        source: which map was used (file names).
        rows_blank: input rows with no code (missing, empty, NDC ``0``).
        rows_malformed: input rows with a code that could not be read (e.g. a bad NDC).
    """

    step: str
    rows_in: int
    rows_mapped: int
    codes_in: int
    codes_mapped: int
    source: str = ""
    rows_blank: int = 0
    rows_malformed: int = 0

    @property
    def rows_dropped(self) -> int:
        """Rows without a mapped code."""
        return self.rows_in - self.rows_mapped

    @property
    def codes_dropped(self) -> int:
        """Distinct usable input codes that did not map."""
        return self.codes_in - self.codes_mapped

    def as_report_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``DataReport.coverage(step, rows_in, rows_mapped, codes_in,
        codes_mapped, source)``."""
        data = asdict(self)
        data.pop("rows_blank")
        data.pop("rows_malformed")
        return data

    def to_dict(self) -> dict[str, Any]:
        """All fields plus the dropped counts (JSON-friendly)."""
        return {**asdict(self), "rows_dropped": self.rows_dropped,
                "codes_dropped": self.codes_dropped}

    def __str__(self) -> str:
        return (f"{self.step}: rows {self.rows_mapped}/{self.rows_in} mapped "
                f"({self.rows_blank} blank, {self.rows_malformed} malformed), "
                f"codes {self.codes_mapped}/{self.codes_in} mapped [{self.source}]")


def _check_level(atc_level: int, max_level: int = 5) -> int:
    if atc_level not in ATC_LEVEL_LENGTHS or atc_level > max_level:
        raise ValueError(f"atc_level must be one of 1..{max_level}, got {atc_level!r}")
    return ATC_LEVEL_LENGTHS[atc_level]


def atc_truncate(codes: pd.Series, atc_level: int) -> pd.Series:
    """Truncate ATC codes to a level.

    Args:
        codes: ATC codes (any level; whitespace is stripped, letters upper-cased).
        atc_level: 1..5 (level 3 = 4 characters, level 4 = 5 characters).

    Returns:
        string Series; NA where the code is missing or shorter than the level needs.
    """
    length = _check_level(atc_level)
    text = pd.Series(codes).astype("string").str.strip().str.upper()
    long_enough = (text.str.len() >= length).fillna(False).astype(bool)
    return text.str.slice(0, length).where(long_enough, pd.NA).astype("string")


def _choose(table: pd.DataFrame, atc_level: int) -> pd.Series:
    """Key -> one ATC code at ``atc_level``: most map rows, then alphabetically smallest."""
    truncated = table.assign(atc=atc_truncate(table["atc"], atc_level)).dropna(subset=["key", "atc"])
    counts = truncated.groupby(["key", "atc"], observed=True).size().rename("n").reset_index()
    counts = counts.sort_values(["key", "n", "atc"], ascending=[True, False, True], kind="mergesort")
    chosen = counts.drop_duplicates("key", keep="first")
    return pd.Series(chosen["atc"].to_numpy(dtype=object), index=pd.Index(chosen["key"], dtype=object))


def _apply(keys: pd.Series, lookup: pd.Series) -> pd.Series:
    """Vectorised ``keys.map(lookup)`` via factorisation (fast for millions of rows)."""
    codes, uniques = pd.factorize(keys, use_na_sentinel=True)
    mapped = lookup.reindex(pd.Index(uniques, dtype=object)).to_numpy(dtype=object)
    out = np.full(len(keys), None, dtype=object)
    present = codes >= 0
    out[present] = mapped[codes[present]]
    return pd.Series(out, index=keys.index, dtype="string")


def _coverage(step: str, source: str, keys: pd.Series, result: pd.Series, blank: int,
              malformed: int) -> MappingCoverage:
    usable = keys.dropna()
    mapped_keys = keys[result.notna()]
    return MappingCoverage(step=step, rows_in=int(len(keys)), rows_mapped=int(result.notna().sum()),
                           codes_in=int(usable.nunique()), codes_mapped=int(mapped_keys.nunique()),
                           source=source, rows_blank=int(blank), rows_malformed=int(malformed))


# ------------------------------------------------------------------------------ map loading
@functools.lru_cache(maxsize=1)
def _shipped_ndc_table() -> pd.DataFrame:
    raw = pd.read_csv(resource_path("gsn_atc_ndc_mapping.csv.gz"), dtype=str)
    ndc = raw["ndc"].str.strip()
    # stored as integers upstream: 7-10 digit values lost their leading zeros
    ndc = ndc.where(ndc.str.fullmatch(r"\d{1,11}").fillna(False).astype(bool)).str.zfill(11)
    ndc = ndc.where(ndc != "0" * 11)
    return pd.DataFrame({"key": ndc, "atc": raw["atc"]}).dropna().reset_index(drop=True)


@functools.lru_cache(maxsize=1)
def _shipped_gsn_table() -> pd.DataFrame:
    raw = pd.read_csv(resource_path("gsn_atc_ndc_mapping.csv.gz"), dtype=str)
    table = pd.DataFrame({"key": _normalize_gsn_token(raw["gsn"]), "atc": raw["atc"]})
    # one row per (gsn, atc) NDC in the file: count distinct pairs, not NDC multiplicity
    return table.dropna().drop_duplicates().reset_index(drop=True)


@functools.lru_cache(maxsize=1)
def _shipped_name_table() -> pd.DataFrame:
    raw = pd.read_csv(resource_path("mimic_drug_to_atc.csv.gz"), dtype=str)
    return pd.DataFrame({"key": _normalize_name(raw["drug"]), "atc": raw["atc_code"]}).dropna()


@functools.lru_cache(maxsize=4)
def _rxnorm_tables(map_dir: Path) -> tuple[pd.Series, pd.DataFrame]:
    dict_path, atc_path = map_dir / RXNORM_DICT_FILE, map_dir / RXNORM_ATC_FILE
    missing = [p.name for p in (dict_path, atc_path) if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"DrugMapper(source='rxnorm') needs {RXNORM_DICT_FILE} and {RXNORM_ATC_FILE} in "
            f"map_dir={map_dir}; missing: {', '.join(missing)}. These files carry no licence and are "
            "not shipped with medtoolkit: obtain them (e.g. from the SafeDrug/GAMENet repositories) "
            "or use DrugMapper(source='shipped')."
        )
    parsed = ast.literal_eval(dict_path.read_text(encoding="utf-8"))  # never eval()
    if not isinstance(parsed, dict):
        raise ValueError(f"{dict_path} must hold a dict literal NDC11 -> RXCUI")
    ndc2rxcui = pd.Series({str(k).strip(): str(v).strip() for k, v in parsed.items()}, dtype=object)
    ndc2rxcui = ndc2rxcui[ndc2rxcui != ""]
    with zipfile.ZipFile(atc_path) as archive:
        members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
        if len(members) != 1:
            raise ValueError(f"{atc_path} must contain exactly one csv, found {members}")
        raw = pd.read_csv(io.BytesIO(archive.read(members[0])), dtype=str)
    if not {"RXCUI", "ATC5"} <= set(raw.columns):
        raise ValueError(f"{atc_path}: expected columns RXCUI and ATC5, got {list(raw.columns)}")
    rx = pd.DataFrame({"key": raw["RXCUI"].str.strip(), "atc": raw["ATC5"].str.strip()}).dropna()
    rx = rx.drop_duplicates("key", keep="first").reset_index(drop=True)  # SafeDrug; pitfall 8
    return ndc2rxcui, rx


def _normalize_gsn_token(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    digits = text.str.fullmatch(r"\d{1,6}").fillna(False).astype(bool)
    out = text.str.zfill(6).where(digits, pd.NA)
    return out.where(out != "000000", pd.NA)


def _normalize_name(values: pd.Series) -> pd.Series:
    text = pd.Series(values).astype("string").str.strip().str.casefold()
    return text.where(text != "", pd.NA)


# ------------------------------------------------------------------------------ the mapper
class DrugMapper:
    """Map NDC / GSN / drug names to ATC codes (vectorised; every call records its coverage).

    Args:
        source: ``"shipped"`` (NDC -> ATC7 via the shipped MIT map) or ``"rxnorm"`` (SafeDrug's
            NDC -> RXCUI -> ATC4 from user-supplied files; ATC levels 1-4 only).
        map_dir: directory with ``ndc2rxnorm_mapping.txt`` and ``ndc2atc_level4.zip``
            (required for ``"rxnorm"``).

    Raises:
        ValueError: unknown source, or ``"rxnorm"`` without ``map_dir``.
        FileNotFoundError: ``"rxnorm"`` and the files are missing from ``map_dir``.

    Example::

        mapper = DrugMapper()
        atc3 = mapper.map_ndc(prescriptions["NDC"], atc_level=3)
        report.coverage(**mapper.last_coverage.as_report_kwargs())
    """

    def __init__(self, source: Literal["shipped", "rxnorm"] = "shipped",
                 map_dir: Path | str | None = None) -> None:
        if source not in ("shipped", "rxnorm"):
            raise ValueError(f"source must be 'shipped' or 'rxnorm', got {source!r}")
        self.source = source
        self.map_dir = None if map_dir is None else Path(map_dir).expanduser().resolve()
        self.last_coverage: MappingCoverage | None = None
        self.coverages: list[MappingCoverage] = []
        if source == "rxnorm":
            if self.map_dir is None:
                raise ValueError(
                    "DrugMapper(source='rxnorm') needs map_dir: the directory holding "
                    f"{RXNORM_DICT_FILE} and {RXNORM_ATC_FILE} (not shipped: no licence)"
                )
            _rxnorm_tables(self.map_dir)  # fail early with a clear message

    def _record(self, coverage: MappingCoverage) -> MappingCoverage:
        self.last_coverage = coverage
        self.coverages.append(coverage)
        return coverage

    def map_ndc(self, ndc: pd.Series, atc_level: int = 3) -> pd.Series:
        """ATC codes for NDCs (normalised with :func:`~medtoolkit.knowledge.normalize_ndc`).

        Args:
            ndc: NDC values (11-digit, dashed 10-digit or numeric).
            atc_level: 1..5 for the shipped map, 1..4 for ``"rxnorm"`` (3 = ``N02B``).

        Returns:
            string Series aligned with ``ndc``; NA when blank, malformed or unmapped.
            ``last_coverage`` holds the coverage (codes = distinct normalised NDCs).
        """
        if self.source == "rxnorm":
            _check_level(atc_level, max_level=4)
        else:
            _check_level(atc_level)
        keys, counts = normalize_ndc_counted(pd.Series(ndc))
        keys = keys.astype(object).where(keys.notna(), None)
        if self.source == "shipped":
            lookup = _choose(_shipped_ndc_table(), atc_level)
            result = _apply(keys, lookup)
            source = "gsn_atc_ndc_mapping.csv.gz (shipped, MIT)"
        else:
            assert self.map_dir is not None
            ndc2rxcui, rx = _rxnorm_tables(self.map_dir)
            rxcui = _apply(keys, ndc2rxcui).astype(object)
            rxcui = rxcui.where(pd.notna(rxcui), None)
            rx_lookup = pd.Series(atc_truncate(rx["atc"], atc_level).to_numpy(dtype=object),
                                  index=pd.Index(rx["key"], dtype=object)).dropna()
            result = _apply(rxcui, rx_lookup)
            source = f"{RXNORM_DICT_FILE} + {RXNORM_ATC_FILE} (first row per RXCUI) in {self.map_dir}"
        self._record(_coverage(f"ndc->atc{atc_level} ({self.source})", source, keys, result,
                               counts.blank, counts.malformed))
        return result

    def map_gsn(self, gsn: pd.Series, atc_level: int = 3) -> pd.Series:
        """ATC codes for GSNs (MIMIC-IV ``prescriptions.gsn``) via the shipped map.

        GSNs are zero-padded to 6 digits. A cell with several whitespace-separated GSNs (as in
        MIMIC-IV) gets the ATC code shared by most of its mapped GSNs, ties to the smallest code.

        Args:
            gsn: GSN values.
            atc_level: 1..5.

        Returns:
            string Series aligned with ``gsn``; ``last_coverage`` counts distinct GSN tokens.
        """
        _check_level(atc_level)
        text = pd.Series(gsn).astype("string").str.strip()
        blank = (text.isna() | (text == "")).to_numpy(dtype=bool)
        lookup = _choose(_shipped_gsn_table(), atc_level)
        # one row per (input position, token)
        tokens = pd.Series(text.where(~blank).to_numpy(), dtype="string").str.split().explode()
        tokens = tokens.dropna()
        positions = tokens.index.to_numpy()
        token_keys = _normalize_gsn_token(tokens.astype("string")).reset_index(drop=True)
        token_keys = token_keys.astype(object).where(token_keys.notna(), None)
        token_atc = _apply(token_keys, lookup).to_numpy(dtype=object)
        found = pd.notna(token_atc)
        out = np.full(len(text), None, dtype=object)
        if found.any():
            hits = pd.DataFrame({"row": positions[found], "atc": token_atc[found]})
            hits = hits.groupby(["row", "atc"]).size().rename("n").reset_index()
            hits = hits.sort_values(["row", "n", "atc"], ascending=[True, False, True],
                                    kind="mergesort").drop_duplicates("row")
            out[hits["row"].to_numpy(dtype=np.int64)] = hits["atc"].to_numpy(dtype=object)
        result = pd.Series(out, index=text.index, dtype="string")
        valid_token = token_keys.notna().to_numpy(dtype=bool)
        rows_with_valid = np.zeros(len(text), dtype=bool)
        rows_with_valid[positions[valid_token]] = True
        malformed = int((~blank & ~rows_with_valid).sum())
        self._record(MappingCoverage(
            step=f"gsn->atc{atc_level} (shipped)", rows_in=int(len(text)),
            rows_mapped=int(result.notna().sum()),
            codes_in=int(token_keys[valid_token].nunique()),
            codes_mapped=int(token_keys[found].nunique()),
            source="gsn_atc_ndc_mapping.csv.gz (shipped, MIT)", rows_blank=int(blank.sum()),
            rows_malformed=malformed))
        return result

    def map_name(self, names: pd.Series, atc_level: int = 3) -> pd.Series:
        """ATC codes for drug names via the shipped ``mimic_drug_to_atc`` map.

        Matching is exact after trimming whitespace, case-insensitive (``str.casefold``).

        Args:
            names: drug names (e.g. MIMIC ``DRUG``, eICU ``drugname``).
            atc_level: 1..5.

        Returns:
            string Series aligned with ``names``; ``last_coverage`` counts distinct normalised names.
        """
        _check_level(atc_level)
        keys = _normalize_name(pd.Series(names))
        blank = int(keys.isna().sum())
        keys = keys.astype(object).where(keys.notna(), None)
        lookup = _choose(_shipped_name_table(), atc_level)
        result = _apply(keys, lookup)
        self._record(_coverage(f"name->atc{atc_level} (shipped)",
                               "mimic_drug_to_atc.csv.gz (shipped, MIT)", keys, result, blank, 0))
        return result
