"""``mimic3``: raw MIMIC-III tables (or the built-in MIMIC-III demo) as :class:`EHRData`.

Reads ``ADMISSIONS``, ``DIAGNOSES_ICD``, ``PROCEDURES_ICD`` and ``PRESCRIPTIONS`` (``.csv`` or
``.csv.gz``, headers in any case) from ``root``; with ``root=None`` the built-in MIMIC-III
Clinical Database Demo 1.4 (ODbL 1.0, shipped with the package) is used.

Processing (each step counted in the :class:`~medtoolkit.data.report.DataReport`, stored in
``provenance["report"]``):

* prescriptions whose NDC is blank or ``0`` (MIMIC's "unknown") or malformed are **dropped**
  - never forward-filled from the previous row as SafeDrug does (reference notes, pitfall 2);
* optionally (``first_day_medications``) only prescriptions whose ``STARTDATE`` is the first
  start date of their ICU stay are kept (GAMENet's ``filter_first24hour_med``);
* NDC -> ATC (level 3 or 4) with :class:`medtoolkit.knowledge.DrugMapper`. With
  ``drug_map="shipped"`` (MIT maps) rows whose NDC is not in the map are mapped by their ``GSN``,
  then by their ``DRUG`` name (the shipped NDC map covers few MIMIC-III NDCs); with
  ``drug_map="rxnorm"`` only SafeDrug's NDC -> RXCUI -> ATC4 files are used (its route).
  Unmapped rows are dropped; the coverage of every step is reported;
* visit time: ``ADMITTIME`` when it is a valid ISO timestamp (or an unambiguous
  ``m/d/yyyy`` date). Damaged or ambiguous values (two-digit years like ``10/23/64 21:09``,
  as in the demo mirror's ``ADMISSIONS.csv``) are replaced by the admission's earliest
  ``PRESCRIPTIONS.STARTDATE``; an admission with neither raises an error naming file and line.
  Visits are ordered by that time, never by ``HADM_ID``. A non-blank ``STARTDATE`` that is not
  a date is an error naming file and line; a table with a header but no rows is an error;
  ICD codes spelled ``NaN`` / ``NA`` / ``NULL`` / ``None`` count as blank (dropped, counted);
* ICD-9 codes that lost their leading zeros (a spreadsheet round trip turns ``0389`` into
  ``389``) are detected when ``D_ICD_DIAGNOSES`` / ``D_ICD_PROCEDURES`` are in ``root``: a code
  absent from the dictionary whose zero-padded form is a dictionary code is counted as a finding
  in the report (with a logged warning) and kept as written, or restored with
  ``repair_icd_zeros``. The built-in demo ships no dictionary tables, so there (and for any
  ``root`` without them) the check is skipped and a report note says so;
* assembly (:func:`~medtoolkit.data.assemble.assemble_ehr`): top-N diagnoses/procedures,
  visits with all three kinds, ``min_visits`` applied last.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from medtoolkit.components.base import Dataset
from medtoolkit.components.params import Params as BaseParams
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.loaders._raw import cached_raw_build, check_icd_zeros, dataset_name, engine_field, raw_root
from medtoolkit.data.report import DataReport
from medtoolkit.data.tables import DataFormatError, find_table, read_table, resolve_engine

logger = logging.getLogger(__name__)

#: bump when the processing changes, so cached builds are not reused
LOADER_VERSION = 2
TABLES = ("ADMISSIONS", "DIAGNOSES_ICD", "PROCEDURES_ICD", "PRESCRIPTIONS")
#: ICD-9 dictionaries read when present (event table -> dictionary table)
DICTIONARIES = {"DIAGNOSES_ICD": "D_ICD_DIAGNOSES", "PROCEDURES_ICD": "D_ICD_PROCEDURES"}
_EPOCH = pd.Timestamp("1970-01-01")
_DAY = pd.Timedelta(days=1)
_ISO = r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?$"
#: spellings of a missing value that must never become a code (compared upper-cased)
_MISSING_CODES = ("NAN", "NA", "NULL", "NONE")
_US_FOUR_DIGIT = r"^\d{1,2}/\d{1,2}/\d{4}( \d{1,2}:\d{2}(:\d{2})?)?$"


def _parse_times(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970 for unambiguous timestamps; returns (days, valid mask). Others are NaN.

    A categorical column is parsed once per distinct value.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        days = _per_value(values, lambda unique: _parse_times(unique)[0], np.nan)
        return days, ~np.isnan(days)
    text = values.astype(str).str.strip()
    iso = text.str.match(_ISO).to_numpy(dtype=bool)
    us = text.str.match(_US_FOUR_DIGIT).to_numpy(dtype=bool)
    days = np.full(len(text), np.nan)
    if iso.any():
        parsed = pd.to_datetime(text[iso], format="ISO8601", errors="coerce")
        days[iso] = ((parsed - _EPOCH) / _DAY).to_numpy(dtype=np.float64, na_value=np.nan)
    if us.any():
        parsed = pd.to_datetime(text[us], format="mixed", dayfirst=False, errors="coerce")
        days[us] = ((parsed - _EPOCH) / _DAY).to_numpy(dtype=np.float64, na_value=np.nan)
    return days, ~np.isnan(days)


class MIMIC3Dataset(Dataset):
    """MIMIC-III tables as :class:`EHRData` (see the module docstring for the rules).

    Vocabularies: ``diagnoses`` and ``procedures`` hold ICD-9 codes as written in the tables,
    ``medications`` ATC codes of ``atc_level``. ``patient_ids`` are ``SUBJECT_ID`` strings;
    ``time`` is the visit time in days since 1970-01-01 (MIMIC's shifted calendar).
    """

    class Params(BaseParams):
        """Where the tables are and how to process them.

        Attributes:
            root: directory holding the four tables; None loads the built-in demo.
            atc_level: ATC level of the medication codes (3 = ``N02B``, 4 = ``N02BE``).
            top_diagnoses: keep the N most frequent diagnosis codes (None keeps all).
            top_procedures: keep the N most frequent procedure codes (None keeps all).
            min_visits: drop patients with fewer visits (applied after every other filter;
                default 1, as in the presets; SafeDrug's preprocessing uses 2).
            first_day_medications: only prescriptions on the first start date of their ICU stay.
            repair_icd_zeros: restore ICD-9 codes that lost their leading zeros (needs the
                ``D_ICD_*`` dictionary tables; always reported, kept as written when False).
            drug_map: ``"shipped"`` (MIT NDC -> ATC map) or ``"rxnorm"`` (SafeDrug's maps).
            drug_map_dir: for ``"rxnorm"``: directory with ``ndc2rxnorm_mapping.txt`` and
                ``ndc2atc_level4.zip`` (never shipped: no licence).
            substructures: compute the BRICS substructure mask (SafeDrug's molecule input;
                skipped with a warning when rdkit is missing; False saves ~3 s on the demo).
            cache: reuse a cached build when inputs and options are unchanged.
            cache_dir: cache directory (None: ``$MEDTOOLKIT_CACHE_DIR`` or ``~/.cache/medtoolkit``).
            cache_mmap: memory-map a cached build's arrays read-only (the default; shared by every
                process that loads the entry), or read them into memory.
            engine: CSV engine, ``"arrow"`` (pyarrow, default; pandas when pyarrow is missing) or
                ``"pandas"``; both give the same data, so it is not part of the cache key.
        """

        root: Path | None = Field(None, description="MIMIC-III table directory; None = built-in demo")
        atc_level: Literal[3, 4] = Field(3, description="ATC level of the medication codes")
        top_diagnoses: int | None = Field(2000, ge=1, description="keep the N most frequent diagnoses (None: all)")
        top_procedures: int | None = Field(None, ge=1, description="keep the N most frequent procedures (None: all)")
        min_visits: int = Field(
            1, ge=1,
            description="drop patients with fewer visits (applied last); 1 keeps single-visit patients, "
            "SafeDrug's preprocessing uses 2",
        )
        first_day_medications: bool = Field(
            False, description="only prescriptions on the first start date of their ICU stay (GAMENet)"
        )
        repair_icd_zeros: bool = Field(
            False, description="restore ICD-9 codes that lost leading zeros (needs D_ICD_* tables; always reported)"
        )
        drug_map: Literal["shipped", "rxnorm"] = Field("shipped", description="NDC -> ATC map")
        drug_map_dir: Path | None = Field(None, description="directory of SafeDrug's NDC maps (drug_map=rxnorm)")
        substructures: bool = Field(
            True, description="compute the BRICS substructure mask of the drugs (SafeDrug; needs rdkit)"
        )
        cache: bool = Field(True, description="reuse a cached build when inputs and options are unchanged")
        cache_dir: Path | None = Field(None, description="cache directory (None: default)")
        cache_mmap: bool = Field(
            True, description="memory-map a cached build's arrays read-only (False: read them into memory)"
        )
        engine: Literal["arrow", "pandas"] = engine_field()

    params: Params
    source_name: ClassVar[str] = "mimic3"

    @classmethod
    def knowledge_provided(cls, params: BaseParams) -> frozenset[str] | None:
        """The shipped drug knowledge: ``"ddi"``, ``"smiles"``, and ``"substructures"`` when
        ``substructures`` is true and rdkit is installed
        (:func:`medtoolkit.knowledge.drug_knowledge_names`)."""
        from medtoolkit.knowledge import drug_knowledge_names

        return drug_knowledge_names(with_substructures=bool(getattr(params, "substructures", True)))

    # ------------------------------------------------------------------ public
    def load(self, progress: bool = True) -> EHRData:
        """Read the tables (or a cached build) and assemble the dataset.

        Args:
            progress: log each table as it is read (INFO level).

        Returns:
            The dataset; ``provenance["report"]`` holds every drop and the mapping coverage,
            ``provenance["cache"]`` whether the cache was hit.

        Raises:
            FileNotFoundError: the directory or a table is missing.
            DataFormatError: a table is malformed (the message names file, line and column).
        """
        paths = self._locate()
        inputs = list(paths.values())
        if self.params.drug_map == "rxnorm" and self.params.drug_map_dir is not None:
            inputs += [p for p in sorted(Path(self.params.drug_map_dir).glob("ndc2*")) if p.is_file()]
        return cached_raw_build(
            self.params, self.source_name, LOADER_VERSION, inputs,
            build=lambda: self._build(paths, progress), unhashed=("drug_map_dir",),
            name=dataset_name(self.source_name, self.params.root),
        )

    def describe(self) -> dict[str, Any]:
        """Parameters plus the resolved table directory."""
        return {"type": self.source_name, **self.params.model_dump(mode="json"), "directory": str(self._root())}

    # ------------------------------------------------------------------ steps
    def _root(self) -> Path:
        return raw_root(self.params.root, "mimic3")

    def _locate(self) -> dict[str, Path]:
        root = self._root()
        paths = {name: find_table(root, name) for name in TABLES}
        for name in DICTIONARIES.values():
            try:
                paths[name] = find_table(root, name)
            except FileNotFoundError:
                continue
        return paths

    def _build(self, paths: dict[str, Path], progress: bool) -> EHRData:
        from medtoolkit.data.assemble import assemble_ehr
        from medtoolkit.knowledge import build_drug_knowledge

        report = DataReport()
        p = self.params
        engine = resolve_engine(p.engine)
        by_value = engine == "arrow"  # text columns as categoricals, per-value work on their categories
        if progress:
            logger.info("mimic3: reading %s (%s engine)", paths["ADMISSIONS"].parent, engine)
        admissions = read_table(
            paths["ADMISSIONS"], {"SUBJECT_ID": "int", "HADM_ID": "int", "ADMITTIME": "str"},
            report=report, engine=engine, categorical=by_value,
        )
        diagnoses = read_table(
            paths["DIAGNOSES_ICD"], {"SUBJECT_ID": "int", "HADM_ID": "int", "ICD9_CODE": "str"},
            report=report, engine=engine, categorical=by_value,
        )
        procedures = read_table(
            paths["PROCEDURES_ICD"], {"SUBJECT_ID": "int", "HADM_ID": "int", "ICD9_CODE": "str"},
            report=report, engine=engine, categorical=by_value,
        )
        prescriptions = read_table(
            paths["PRESCRIPTIONS"],
            {"SUBJECT_ID": "int", "HADM_ID": "int", "ICUSTAY_ID": "int?", "STARTDATE": "str", "NDC": "str",
             "GSN": "str", "DRUG": "str"},
            optional=("GSN", "DRUG"), report=report, engine=engine, categorical=by_value,
        )
        for name, table in (("ADMISSIONS", admissions), ("DIAGNOSES_ICD", diagnoses),
                            ("PROCEDURES_ICD", procedures), ("PRESCRIPTIONS", prescriptions)):
            if table.empty:
                raise DataFormatError(
                    f"{paths[name]}: the table has a header but no data rows; a MIMIC-III build needs "
                    "rows in all four tables"
                )
        visits = self._visits(admissions, prescriptions, paths, report)
        if by_value:
            medications = self._medications_by_value(prescriptions, paths["PRESCRIPTIONS"].name, report)
        else:
            medications = self._medications(prescriptions, paths["PRESCRIPTIONS"].name, report)
        events = {
            DIAGNOSES: self._icd_codes(_events(diagnoses, "ICD9_CODE"), "DIAGNOSES_ICD", paths, report),
            PROCEDURES: self._icd_codes(_events(procedures, "ICD9_CODE"), "PROCEDURES_ICD", paths, report),
            MEDICATIONS: medications,
        }
        return assemble_ehr(
            events, visits,
            lambda codes: build_drug_knowledge(codes, atc_level=p.atc_level, with_substructures=p.substructures),
            name=dataset_name(self.source_name, p.root),
            report=report, min_visits=p.min_visits,
            top_n={DIAGNOSES: p.top_diagnoses, PROCEDURES: p.top_procedures},
            provenance={
                "source": "mimic3",
                "directory": str(paths["ADMISSIONS"].parent),
                "builtin_demo": p.root is None,
                "options": p.model_dump(mode="json"),
                "tables": {name: path.name for name, path in paths.items()},
            },
        )

    def _icd_codes(
        self, events: pd.DataFrame, table: str, paths: dict[str, Path], report: DataReport
    ) -> pd.DataFrame:
        """Check (and with ``repair_icd_zeros`` restore) codes that lost leading zeros."""
        dictionary = DICTIONARIES[table]
        known = None
        if dictionary in paths:
            frame = read_table(paths[dictionary], {"ICD9_CODE": "str"}, report=report, engine=self.params.engine)
            known = frame["ICD9_CODE"].str.strip()
        source = paths[table].name
        categorical = isinstance(events["CODE"].dtype, pd.CategoricalDtype)
        codes = events["CODE"].astype(object) if categorical and known is not None else events["CODE"]
        checked = check_icd_zeros(
            codes, known, report, f"{source}: ICD9_CODE leading zeros", source,
            self.params.repair_icd_zeros, dictionary,
        )
        if checked is not events["CODE"]:
            events["CODE"] = pd.Categorical(checked.to_numpy()) if categorical else checked.to_numpy()
        return events

    def _visits(
        self, admissions: pd.DataFrame, prescriptions: pd.DataFrame, paths: dict[str, Path], report: DataReport
    ) -> pd.DataFrame:
        """One row per admission with a trustworthy time (see the module docstring)."""
        source = paths["ADMISSIONS"].name
        repeated = admissions["HADM_ID"].duplicated(keep="first").to_numpy()
        if repeated.any():
            line = admissions.index[np.flatnonzero(repeated)[0]]
            raise DataFormatError(
                f"{paths['ADMISSIONS']}: line {line}, column HADM_ID: admission "
                f"{admissions['HADM_ID'].iloc[np.flatnonzero(repeated)[0]]} appears twice with different values"
            )
        days, valid = _parse_times(admissions["ADMITTIME"])
        start_days, start_valid = _parse_times(prescriptions["STARTDATE"])
        invalid = np.flatnonzero(~start_valid)
        if invalid.size:  # blank is "unknown"; anything else that does not parse is an error
            text = prescriptions["STARTDATE"].iloc[invalid].astype(str).str.strip()
            unreadable = invalid[(text != "").to_numpy()]
            if unreadable.size:
                first = int(unreadable[0])
                raise DataFormatError(
                    f"{paths['PRESCRIPTIONS']}: line {prescriptions.index[first]}, column STARTDATE: "
                    f"{prescriptions['STARTDATE'].iloc[first]!r} is not a date (YYYY-MM-DD[ HH:MM[:SS]] or "
                    f"m/d/yyyy); {unreadable.size} such values"
                )
        earliest = (
            pd.Series(start_days[start_valid], index=prescriptions["HADM_ID"].to_numpy()[start_valid])
            .groupby(level=0).min()
        )
        fallback = earliest.reindex(admissions["HADM_ID"].to_numpy()).to_numpy(dtype=np.float64)
        damaged = ~valid
        if damaged.any():
            examples = [
                f"line {line}: {value!r}"
                for line, value in zip(admissions.index[damaged][:3], admissions["ADMITTIME"].to_numpy()[damaged][:3])
            ]
            report.note(
                f"{source}: {int(damaged.sum())} of {len(admissions)} ADMITTIME values are damaged or ambiguous "
                f"(e.g. {'; '.join(examples)}); those admissions are timed by their earliest "
                f"{paths['PRESCRIPTIONS'].name} STARTDATE instead"
            )
            no_time = damaged & np.isnan(fallback)
            if no_time.any():
                has_rows = np.isin(admissions["HADM_ID"].to_numpy(), prescriptions["HADM_ID"].to_numpy())
                timeless_with_rows = no_time & has_rows
                if timeless_with_rows.any():
                    first = int(np.flatnonzero(timeless_with_rows)[0])
                    raise DataFormatError(
                        f"{paths['ADMISSIONS']}: line {admissions.index[first]}, column ADMITTIME: "
                        f"{admissions['ADMITTIME'].iloc[first]!r} is not a usable date and admission "
                        f"{admissions['HADM_ID'].iloc[first]} has no valid STARTDATE in "
                        f"{paths['PRESCRIPTIONS'].name}, so its visit cannot be ordered "
                        f"({int(timeless_with_rows.sum())} such admissions)"
                    )
                report.note(
                    f"{source}: {int(no_time.sum())} admissions have neither a usable ADMITTIME nor any "
                    "prescription row; they are kept untimed and fall out for lack of medications"
                )
        return pd.DataFrame({
            "PATIENT": admissions["SUBJECT_ID"].astype(str).to_numpy(),
            "VISIT": admissions["HADM_ID"].astype(str).to_numpy(),
            "TIME": np.where(valid, days, fallback),
        })

    def _medications(self, prescriptions: pd.DataFrame, source: str, report: DataReport) -> pd.DataFrame:
        """Prescriptions -> (PATIENT, VISIT, CODE=ATC) rows; every removed row counted."""
        from medtoolkit.knowledge import DrugMapper, normalize_ndc_counted

        p = self.params
        frame = prescriptions
        if p.first_day_medications:
            frame = _first_day_rows(frame, source, report)
        keys, counts = normalize_ndc_counted(frame["NDC"])
        text = frame["NDC"].astype(str).str.strip()
        blank = (text == "") | text.str.fullmatch(r"0+").to_numpy(dtype=bool)
        malformed = keys.isna().to_numpy() & ~np.asarray(blank, dtype=bool)
        report.drop("prescriptions: NDC blank or 0", int(np.sum(blank)), "no NDC (MIMIC writes 0 when unknown)",
                    source=source, examples=[f"line {i}" for i in frame.index[np.asarray(blank, dtype=bool)][:5]])
        report.drop("prescriptions: NDC malformed", int(malformed.sum()), "not an 11-digit or dashed 10-digit NDC",
                    source=source,
                    examples=[f"line {i}: {v!r}" for i, v in zip(frame.index[malformed][:5], text[malformed][:5])])
        usable = keys.notna().to_numpy()
        frame, keys = frame.loc[usable], keys[usable]
        mapper = DrugMapper(source=p.drug_map, map_dir=p.drug_map_dir)
        atc = mapper.map_ndc(frame["NDC"], atc_level=p.atc_level).astype(object)
        _record(report, mapper, source)
        if p.drug_map == "shipped":  # the shipped NDC map is sparse for MIMIC-III: GSN, then name
            for column, method in (("GSN", mapper.map_gsn), ("DRUG", mapper.map_name)):
                missing = atc.isna().to_numpy()
                if column not in frame.columns or not missing.any():
                    continue
                extra = method(frame.loc[missing, column], atc_level=p.atc_level).astype(object)
                _record(report, mapper, source, f" (rows whose NDC did not map, by {column})")
                atc[missing] = extra.to_numpy()
        mapped = atc.notna().to_numpy()
        unmapped = ~mapped
        route = "NDC, GSN or drug name" if p.drug_map == "shipped" else "NDC"
        report.drop(
            f"prescriptions: no ATC{p.atc_level}", int(unmapped.sum()),
            f"valid NDC whose {route} is not in the {p.drug_map} map", source=source,
            examples=sorted(set(keys[unmapped].astype(str)))[:5],
        )
        kept = frame.loc[mapped]
        return pd.DataFrame({
            "PATIENT": kept["SUBJECT_ID"].astype(str).to_numpy(),
            "VISIT": kept["HADM_ID"].astype(str).to_numpy(),
            "CODE": atc[mapped].astype(str).to_numpy(),
        })

    def _medications_by_value(self, prescriptions: pd.DataFrame, source: str, report: DataReport) -> pd.DataFrame:
        """:meth:`_medications` for categorical text columns: per-value work runs once per distinct value.

        Gives the same rows, drops and coverage as :meth:`_medications`; the result's columns
        are categoricals (``PATIENT``, ``VISIT``, ``CODE``).
        """
        from medtoolkit.knowledge import DrugMapper, normalize_ndc

        p = self.params
        frame = prescriptions
        if p.first_day_medications:
            frame = _first_day_rows(frame, source, report)
        ndc = frame["NDC"]

        def flags(unique: pd.Series) -> np.ndarray:
            keys = normalize_ndc(unique)
            text = unique.astype(str).str.strip()
            blank = ((text == "") | text.str.fullmatch(r"0+")).to_numpy(dtype=bool)
            return np.stack([blank, keys.isna().to_numpy() & ~blank], axis=1)

        per_row = _per_value(ndc, flags, np.array([True, False]))
        blank, malformed = per_row[:, 0].astype(bool), per_row[:, 1].astype(bool)
        del per_row
        report.drop("prescriptions: NDC blank or 0", int(np.sum(blank)), "no NDC (MIMIC writes 0 when unknown)",
                    source=source, examples=[f"line {i}" for i in frame.index[blank][:5]])
        report.drop("prescriptions: NDC malformed", int(malformed.sum()), "not an 11-digit or dashed 10-digit NDC",
                    source=source, examples=[f"line {frame.index[i]}: {str(ndc.iloc[i]).strip()!r}"
                                             for i in np.flatnonzero(malformed)[:5]])
        frame = frame.loc[~blank & ~malformed]
        mapper = DrugMapper(source=p.drug_map, map_dir=p.drug_map_dir)
        by_value = _map_by_value(mapper.map_ndc, frame["NDC"], p.atc_level)
        if by_value is None:
            atc_ids, table = _ids(mapper.map_ndc(frame["NDC"], atc_level=p.atc_level).to_numpy(dtype=object))
        else:
            atc_ids, table = by_value
        _record(report, mapper, source)
        if p.drug_map == "shipped":  # the shipped NDC map is sparse for MIMIC-III: GSN, then name
            for column, method in (("GSN", mapper.map_gsn), ("DRUG", mapper.map_name)):
                missing = atc_ids < 0
                if column not in frame.columns or not missing.any():
                    continue
                extra = method(frame.loc[missing, column], atc_level=p.atc_level).to_numpy(dtype=object)
                _record(report, mapper, source, f" (rows whose NDC did not map, by {column})")
                extra_ids, extra_table = _ids(extra)
                atc_ids[missing] = np.where(extra_ids >= 0, extra_ids + len(table), -1)
                table = np.concatenate([table, extra_table])
        mapped = atc_ids >= 0
        unmapped = ~mapped
        route = "NDC, GSN or drug name" if p.drug_map == "shipped" else "NDC"
        ndc_codes = frame["NDC"].cat.codes.to_numpy()
        categories = np.asarray(frame["NDC"].cat.categories, dtype=object)
        unmapped_values = pd.Series(categories[np.unique(ndc_codes[unmapped])], dtype=object)
        report.drop(
            f"prescriptions: no ATC{p.atc_level}", int(unmapped.sum()),
            f"valid NDC whose {route} is not in the {p.drug_map} map", source=source,
            examples=sorted({str(k) for k in normalize_ndc(unmapped_values)})[:5],
        )
        kept = frame.loc[mapped]
        codes, atc_table = pd.factorize(table)  # GSN/name codes may repeat NDC ones
        return pd.DataFrame({
            "PATIENT": _as_categorical(kept["SUBJECT_ID"].to_numpy()),
            "VISIT": _as_categorical(kept["HADM_ID"].to_numpy()),
            "CODE": pd.Categorical.from_codes(codes[atc_ids[mapped]],
                                              categories=pd.Index(np.asarray(atc_table, dtype=object), dtype=object)),
        })


def _per_value(values: pd.Series, function: Any, missing: Any) -> np.ndarray:
    """``function`` applied to the distinct values of a categorical column, spread back to rows.

    Args:
        values: a categorical column (``[rows]``).
        function: ``Series of distinct values -> array-like`` aligned with them (row-wise:
            each output depends only on its own input value).
        missing: the result for rows whose value is missing (code -1).

    Returns:
        ``[rows]`` array: ``function``'s output for each row's value.
    """
    codes = values.cat.codes.to_numpy()
    result = np.asarray(function(pd.Series(np.asarray(values.cat.categories, dtype=object), dtype=object)))
    out = result[np.maximum(codes, 0)] if len(result) else np.full(len(codes), missing, dtype=object)
    if (codes < 0).any():
        out = out.astype(object) if out.dtype.kind not in "fO" else out.copy()
        out[codes < 0] = missing
    return out


def _recode(values: pd.Series, function: Any) -> pd.Categorical:
    """A categorical column with ``function`` (row-wise, on distinct values) applied to its values."""
    new_values = np.asarray(function(pd.Series(np.asarray(values.cat.categories, dtype=object), dtype=object)))
    mapping, uniques = pd.factorize(pd.Series(new_values, dtype=object))
    codes = values.cat.codes.to_numpy()
    if (codes < 0).any():
        raise ValueError("_recode: missing values in a categorical column")
    return pd.Categorical.from_codes(mapping[codes] if len(mapping) else codes,
                                     categories=pd.Index(np.asarray(uniques, dtype=object), dtype=object))


def _as_categorical(values: pd.Series | np.ndarray) -> pd.Categorical:
    """Integer ids (or any values) as a categorical of their string forms (first-seen order)."""
    codes, uniques = pd.factorize(np.asarray(values))
    return pd.Categorical.from_codes(codes, categories=pd.Index(np.asarray(uniques).astype(str), dtype=object))


def _map_by_value(method: Any, values: pd.Series, atc_level: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A :class:`~medtoolkit.knowledge.DrugMapper` method run on the distinct values of a column.

    The coverage's row counts are weighted by how often each value occurs; its code counts
    (distinct keys) are those of the used values, as in a row-by-row call. Returns None when
    some used value is blank or malformed (their row counts are not exposed per value): the
    caller then maps row by row.

    Returns:
        ``([rows] int64 ids into the codes, -1 = unmapped), [k] distinct ATC codes)`` or None.
    """
    from dataclasses import replace

    codes = values.cat.codes.to_numpy()
    if (codes < 0).any():
        return None
    counts = np.bincount(codes, minlength=len(values.cat.categories))
    used = np.flatnonzero(counts)
    distinct = pd.Series(np.asarray(values.cat.categories, dtype=object)[used], dtype=object)
    result = method(distinct, atc_level=atc_level)
    coverage = method.__self__.last_coverage
    if coverage is None or coverage.rows_blank or coverage.rows_malformed:
        return None
    ids, table = _ids(result.to_numpy(dtype=object))
    per_category = np.full(len(counts), -1, dtype=np.int64)
    per_category[used] = ids
    coverage = replace(coverage, rows_in=int(len(codes)), rows_mapped=int(counts[used][ids >= 0].sum()))
    method.__self__.last_coverage = coverage
    method.__self__.coverages[-1] = coverage
    return per_category[codes], table


def _ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[n]`` codes (NA/None -> -1) as ``([n] int64 ids, [k] distinct codes)``."""
    ids, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    return ids.astype(np.int64), np.asarray(uniques, dtype=object)


def _record(report: DataReport, mapper: Any, source: str, suffix: str = "") -> None:
    """Copy the mapper's last coverage into the report."""
    coverage = mapper.last_coverage
    if coverage is not None:
        kwargs = coverage.as_report_kwargs()
        kwargs["step"] = kwargs["step"] + suffix
        kwargs["source"] = f"{source}; map: {coverage.source}"
        report.coverage(**kwargs)


def _events(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """(SUBJECT_ID, HADM_ID, code column) -> (PATIENT, VISIT, CODE) strings, file order kept.

    Missing-value spellings (``NaN``, ``NA``, ``NULL``, ``None``, any case) become blank, so the
    assembly drops and counts them as blank codes instead of keeping them as ICD-9 codes.
    """
    if isinstance(frame[column].dtype, pd.CategoricalDtype):
        def clean(unique: pd.Series) -> np.ndarray:
            text = unique.astype(str).str.strip()
            return text.mask(text.str.upper().isin(_MISSING_CODES), "").to_numpy(dtype=object)

        return pd.DataFrame({
            "PATIENT": _as_categorical(frame["SUBJECT_ID"].to_numpy()),
            "VISIT": _as_categorical(frame["HADM_ID"].to_numpy()),
            "CODE": _recode(frame[column], clean),
        })
    code = frame[column].astype(str).str.strip()
    code = code.mask(code.str.upper().isin(_MISSING_CODES), "")
    return pd.DataFrame({
        "PATIENT": frame["SUBJECT_ID"].astype(str).to_numpy(),
        "VISIT": frame["HADM_ID"].astype(str).to_numpy(),
        "CODE": code.to_numpy(),
    })


def _first_day_rows(frame: pd.DataFrame, source: str, report: DataReport) -> pd.DataFrame:
    """The prescriptions started on the first start date of their ICU stay; every removed row counted.

    Args:
        frame: prescriptions with ``STARTDATE``, ``HADM_ID`` and ``ICUSTAY_ID``.
        source: the file named in the report.
        report: receives the rows without a date and those started later.

    Returns:
        the kept rows, with their start day in ``_DAYS``.
    """
    days, valid = _parse_times(frame["STARTDATE"])
    report.drop(
        "prescriptions: first-day filter", int((~valid).sum()), "STARTDATE missing or not a date",
        source=source, examples=[f"line {i}" for i in frame.index[~valid][:5]],
    )
    frame = frame.loc[valid].assign(_DAYS=days[valid])
    stay = frame["ICUSTAY_ID"].astype("Float64").fillna(-1.0)
    first = frame.groupby([frame["HADM_ID"], stay], sort=False)["_DAYS"].transform("min")
    on_first_day = (frame["_DAYS"] == first).to_numpy()
    report.drop(
        "prescriptions: first-day filter", int((~on_first_day).sum()),
        "STARTDATE after the first start date of the ICU stay", source=source,
    )
    return frame.loc[on_first_day]
