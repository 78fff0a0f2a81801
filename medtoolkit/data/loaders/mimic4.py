"""``mimic4``: raw MIMIC-IV ``hosp/`` tables -> :class:`~medtoolkit.data.ehr.EHRData`.

Tables read (csv or csv.gz, any case): ``admissions``, ``diagnoses_icd``, ``procedures_icd``
and ``prescriptions``. ``root=None`` loads the MIMIC-IV Clinical Database Demo 2.2 that ships
with the package (ODbL 1.0, 100 patients).

Codes
    MIMIC-IV mixes ICD-9 and ICD-10 (``icd_version`` 9 or 10). The two revisions share code
    strings that mean different things, so every diagnosis and procedure code is written
    ``ICD9:<code>`` or ``ICD10:<code>`` (codes as in the file, without dots: ``ICD9:4019``,
    ``ICD10:I10``; for procedures ICD-10 means ICD-10-PCS). Both revisions live in one
    vocabulary per kind; an ``icd_version`` other than 9 or 10 is an error naming the line.

Leading zeros
    A spreadsheet round trip turns ICD-9 ``0389`` into ``389``. When ``d_icd_diagnoses`` /
    ``d_icd_procedures`` are present (the full MIMIC-IV and its demo download ship them; the
    built-in copy of the demo does not), a code absent from the dictionary whose zero-padded
    form (same ``icd_version``) is a dictionary code is counted as a finding in the report (with
    a logged warning), and kept as written or, with ``repair_icd_zeros``, restored. Without
    the dictionaries the check is skipped and a report note says so.

Visits
    One admission (``hadm_id``) is one visit; a patient's visits are ordered by ``admittime``
    (``EHRData.time`` holds it in days since 1970-01-01, MIMIC's shifted dates included),
    never by ``hadm_id``. Events whose admission is not in ``admissions`` are dropped and
    counted.

Medications
    Each prescription row is mapped to ATC (level 3 or 4) by the shipped maps of
    :class:`medtoolkit.knowledge.DrugMapper`, in three steps, each step offered only the
    rows the previous ones left unmapped: ``ndc`` -> ATC, then ``gsn`` -> ATC (a ``gsn``
    field may list several space-separated GSNs: the row gets the ATC code shared by most of
    its mapped GSNs, ties to the smallest code), then the ``drug`` name. Each step's row and
    code coverage is recorded in the report; rows left unmapped are dropped and counted with
    the most frequent names.
    With ``first_day_medications`` only prescriptions starting before ``admittime`` + 24 h
    are used (rows without ``starttime`` are then dropped and counted).

Assembly (:func:`medtoolkit.data.assemble.assemble_ehr`) removes duplicate codes, keeps the
``top_diagnoses`` most frequent diagnoses, keeps admissions with diagnoses, procedures *and*
medications, then applies ``min_visits``. The demo has 275 admissions of which 186 (92
patients) have all three kinds; only 38 of those 92 patients have two or more such
visits, so ``min_visits=2`` leaves 38 patients and 132 visits. Everything dropped is in
``provenance["report"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar, Literal

import pandas as pd
from pydantic import Field

from medtoolkit.components.base import Dataset
from medtoolkit.components.params import Params as BaseParams
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.loaders._raw import (
    cached_raw_build,
    check_icd_zeros,
    dataset_name,
    drug_knowledge_factory,
    engine_field,
    examples,
    file_line,
    locate_tables,
    prefixed,
    raw_root,
    record_coverage,
    sha256_file,
    table_reader,
)
from medtoolkit.data.report import DataReport

logger = logging.getLogger(__name__)

#: bump when the processing changes, so cached builds are not reused
LOADER_VERSION = 2
_TABLES = ("admissions", "diagnoses_icd", "procedures_icd", "prescriptions")
#: ICD dictionaries read when present (event table -> dictionary table)
_DICTIONARIES = {"diagnoses_icd": "d_icd_diagnoses", "procedures_icd": "d_icd_procedures"}
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_EPOCH = pd.Timestamp("1970-01-01")


class MIMIC4Dataset(Dataset):
    """MIMIC-IV ``hosp/`` tables as :class:`EHRData` (see the module docstring for the rules).

    Vocabularies: ``diagnoses`` and ``procedures`` hold ``ICD9:<code>`` / ``ICD10:<code>``,
    ``medications`` holds ATC codes of ``atc_level``. ``patient_ids`` are ``subject_id``
    strings; ``time`` is ``admittime`` in days since 1970-01-01.
    """

    class Params(BaseParams):
        """Where the tables are and how to process them.

        Attributes:
            root: the ``hosp/`` directory or its parent; None loads the built-in demo.
            atc_level: ATC level of the medication codes (3 = ``N02B``, 4 = ``N02BE``).
            top_diagnoses: keep the most frequent diagnosis codes (None keeps all).
            min_visits: drop patients with fewer visits (after every other filter).
            first_day_medications: only prescriptions starting within 24 h of ``admittime``.
            repair_icd_zeros: restore ICD codes that lost their leading zeros (needs the
                ``d_icd_*`` tables; always reported, kept as written when False).
            cache: reuse a cached build when inputs and options are unchanged.
            cache_dir: where cached builds live (None: the default cache directory).
            cache_mmap: memory-map a cached build's arrays read-only (the default; shared by every
                process that loads the entry), or read them into memory.
            engine: CSV engine, ``"arrow"`` (pyarrow, default; pandas when pyarrow is missing) or
                ``"pandas"``; both give the same data, so it is not part of the cache key.
        """

        root: Path | None = Field(None, description="MIMIC-IV hosp/ directory or its parent; None = built-in demo")
        atc_level: Literal[3, 4] = Field(3, description="ATC level of the medication codes")
        top_diagnoses: int | None = Field(2000, ge=1, description="keep the N most frequent diagnoses (None: all)")
        min_visits: int = Field(1, ge=1, description="drop patients with fewer visits (applied last)")
        first_day_medications: bool = Field(
            False, description="only prescriptions starting before admittime + 24 h"
        )
        repair_icd_zeros: bool = Field(
            False, description="restore ICD codes that lost leading zeros (needs d_icd_* tables; always reported)"
        )
        cache: bool = Field(True, description="reuse a cached build when inputs and options are unchanged")
        cache_dir: Path | None = Field(None, description="cache directory (None: default)")
        cache_mmap: bool = Field(
            True, description="memory-map a cached build's arrays read-only (False: read them into memory)"
        )
        engine: Literal["arrow", "pandas"] = engine_field()

    params: Params
    source_name: ClassVar[str] = "mimic4"

    @classmethod
    def knowledge_provided(cls, params: BaseParams) -> frozenset[str] | None:
        """The shipped drug knowledge: ``"ddi"``, ``"smiles"``, and ``"substructures"`` when
        rdkit is installed (:func:`medtoolkit.knowledge.drug_knowledge_names`)."""
        from medtoolkit.knowledge import drug_knowledge_names

        return drug_knowledge_names()

    # ------------------------------------------------------------------ public
    def load(self, progress: bool = True) -> EHRData:
        """Read the tables (or a cached build) and assemble the dataset.

        Args:
            progress: log each table as it is read (INFO level).

        Returns:
            the dataset; ``provenance["report"]`` holds every drop and the mapping coverage.

        Raises:
            FileNotFoundError: the directory or a table is missing.
            medtoolkit.data.tables.DataFormatError: a table has a missing column or a bad
                value (the message names file, line and column).
        """
        hosp, paths = self._locate()
        return cached_raw_build(
            self.params, self.source_name, LOADER_VERSION, list(paths.values()),
            build=lambda: self._build(hosp, paths, progress),
            name=self._name(hosp),
        )

    def _name(self, hosp: Path) -> str:
        """``mimic4-demo``, or ``mimic4:<root>`` named after the directory holding ``hosp/``."""
        directory = None if self.params.root is None else (hosp.parent if hosp.parent.name else hosp)
        return dataset_name(self.source_name, directory)

    # ------------------------------------------------------------------ files
    def _locate(self) -> tuple[Path, dict[str, Path]]:
        root = raw_root(self.params.root, "mimic4")
        if not root.is_dir():
            raise FileNotFoundError(f"mimic4: root {root} is not a directory (expected MIMIC-IV hosp/ or its parent)")
        hosp = root / "hosp" if (root / "hosp").is_dir() else root
        return hosp, locate_tables(hosp, _TABLES, tuple(_DICTIONARIES.values()), "mimic4")

    # ------------------------------------------------------------------ build
    def _build(self, hosp: Path, paths: Mapping[str, Path], progress: bool) -> EHRData:
        from medtoolkit.data.assemble import assemble_ehr
        report = DataReport()
        p = self.params

        read = table_reader(paths, report, "mimic4", progress, engine=p.engine)

        admissions = read("admissions", {"SUBJECT_ID": "str", "HADM_ID": "str", "ADMITTIME": "str"})
        visits = _visits(admissions, paths["admissions"])
        report.note(
            "visits are admissions (hadm_id) ordered by admittime within each patient; "
            "EHRData.time is admittime in days since 1970-01-01 (MIMIC's shifted dates)"
        )

        icd_columns = {"SUBJECT_ID": "str", "HADM_ID": "str", "ICD_CODE": "str", "ICD_VERSION": "str"}
        events: dict[str, pd.DataFrame] = {}
        for kind, table in ((DIAGNOSES, "diagnoses_icd"), (PROCEDURES, "procedures_icd")):
            frame = read(table, icd_columns)
            frame = _known_admissions(frame, visits, report, paths[table].name)
            events[kind] = _icd_events(frame, paths[table], report)
            events[kind]["CODE"] = _check_zeros(
                events[kind]["CODE"], table, read, paths, report, p.repair_icd_zeros
            ).to_numpy()
        report.note(
            "diagnosis and procedure codes are 'ICD9:<code>' or 'ICD10:<code>' (icd_version 9 / 10; "
            "ICD-10 procedures are ICD-10-PCS), both revisions in one vocabulary"
        )

        prescriptions = read(
            "prescriptions",
            {"SUBJECT_ID": "str", "HADM_ID": "str", "DRUG": "str", "NDC": "str", "GSN": "str", "STARTTIME": "str"},
            optional=("NDC", "GSN", "STARTTIME"),
        )
        prescriptions = _known_admissions(prescriptions, visits, report, paths["prescriptions"].name)
        if p.first_day_medications:
            prescriptions = _first_day(prescriptions, admissions, paths["prescriptions"], report)
        events[MEDICATIONS] = _map_medications(prescriptions, p.atc_level, paths["prescriptions"].name, report)

        top_n = {DIAGNOSES: p.top_diagnoses} if p.top_diagnoses is not None else {}
        provenance: dict[str, object] = {
            "source": self.source_name,
            "root": str(hosp),
            "demo": p.root is None,
            "files": {path.name: {"table": name, "sha256": sha256_file(path)} for name, path in paths.items()},
            "options": p.model_dump(mode="json"),
            "code_format": {
                DIAGNOSES: "ICD9:<code> | ICD10:<code>",
                PROCEDURES: "ICD9:<code> | ICD10:<code> (ICD-10-PCS)",
                MEDICATIONS: f"ATC level {p.atc_level}",
            },
            "visit_order": "admittime (time = days since 1970-01-01)",
        }
        return assemble_ehr(
            events,
            visits[["PATIENT", "VISIT", "TIME"]],
            drug_knowledge_factory(p.atc_level),
            name=self._name(hosp),
            report=report,
            min_visits=p.min_visits,
            top_n=top_n,
            provenance=provenance,
        )


# ---------------------------------------------------------------------- steps
def _parse_times(values: pd.Series, path: Path, column: str, frame: pd.DataFrame) -> pd.Series:
    """``YYYY-MM-DD HH:MM:SS`` strings -> timestamps; a bad non-blank value is an error."""
    from medtoolkit.data.tables import DataFormatError

    parsed = pd.to_datetime(values.where(values != ""), format=_TIME_FORMAT, errors="coerce")
    bad = parsed.isna() & (values != "")
    if bad.any():
        position = int(bad.to_numpy().nonzero()[0][0])
        raise DataFormatError(
            f"{path}: line {file_line(frame, position)}, column {column.lower()}: cannot read "
            f"{values.iloc[position]!r} as a date-time ({_TIME_FORMAT}); {int(bad.sum())} such values"
        )
    return parsed


def _visits(admissions: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``admissions`` -> ``[PATIENT, VISIT, TIME, ADMITTIME]``; one row per ``hadm_id``."""
    from medtoolkit.data.tables import DataFormatError

    admit = _parse_times(admissions["ADMITTIME"], path, "ADMITTIME", admissions)
    blank = admit.isna()
    if blank.any():
        position = int(blank.to_numpy().nonzero()[0][0])
        raise DataFormatError(
            f"{path}: line {file_line(admissions, position)}, column admittime: empty; visits cannot be "
            f"ordered without it ({int(blank.sum())} empty values)"
        )
    repeated = admissions["HADM_ID"].duplicated(keep=False)
    if repeated.any():
        position = int(repeated.to_numpy().nonzero()[0][0])
        raise DataFormatError(
            f"{path}: line {file_line(admissions, position)}, column hadm_id: admission "
            f"{admissions['HADM_ID'].iloc[position]!r} appears on several rows with different values"
        )
    return pd.DataFrame(
        {
            "PATIENT": admissions["SUBJECT_ID"].to_numpy(),
            "VISIT": admissions["HADM_ID"].to_numpy(),
            "TIME": ((admit - _EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype="float64"),
            "ADMITTIME": admit.to_numpy(),
        }
    )


def _known_admissions(frame: pd.DataFrame, visits: pd.DataFrame, report: DataReport, source: str) -> pd.DataFrame:
    """Keep rows whose (subject_id, hadm_id) is an admission; count the rest."""
    keys = pd.MultiIndex.from_arrays([frame["SUBJECT_ID"], frame["HADM_ID"]])
    known = keys.isin(pd.MultiIndex.from_arrays([visits["PATIENT"], visits["VISIT"]]))
    report.drop(
        f"{source}: admission",
        int((~known).sum()),
        "hadm_id empty or not in admissions (for that subject_id)",
        source=source,
        examples=examples(frame.loc[~known, "HADM_ID"]),
    )
    return frame.loc[known]


def _icd_events(frame: pd.DataFrame, path: Path, report: DataReport) -> pd.DataFrame:
    """ICD rows -> ``[PATIENT, VISIT, CODE]`` with ``ICD9:``/``ICD10:`` codes."""
    from medtoolkit.data.tables import DataFormatError

    version = frame["ICD_VERSION"].str.strip()
    bad = ~version.isin(["9", "10"])
    if bad.any():
        position = int(bad.to_numpy().nonzero()[0][0])
        raise DataFormatError(
            f"{path}: line {file_line(frame, position)}, column icd_version: expected 9 or 10, got "
            f"{frame['ICD_VERSION'].iloc[position]!r} ({int(bad.sum())} such rows)"
        )
    code = frame["ICD_CODE"].str.strip()
    blank = code == ""
    report.drop(f"{path.name}: icd_code", int(blank.sum()), "empty icd_code", source=path.name)
    keep = ~blank
    return pd.DataFrame(
        {
            "PATIENT": frame.loc[keep, "SUBJECT_ID"].to_numpy(),
            "VISIT": frame.loc[keep, "HADM_ID"].to_numpy(),
            "CODE": prefixed(code[keep], version[keep] == "10").to_numpy(),
        }
    )


def _check_zeros(
    codes: pd.Series, table: str, read: Callable[..., pd.DataFrame], paths: Mapping[str, Path],
    report: DataReport, repair: bool,
) -> pd.Series:
    """Report (and on request restore) prefixed codes that lost leading zeros; see the module docstring."""
    dictionary = _DICTIONARIES[table]
    known = None
    if dictionary in paths:
        frame = read(dictionary, {"ICD_CODE": "str", "ICD_VERSION": "str"})
        known = prefixed(frame["ICD_CODE"].str.strip(), frame["ICD_VERSION"].str.strip() == "10")
    source = paths[table].name
    return check_icd_zeros(
        codes, known, report, f"{source}: icd_code leading zeros", source, repair, dictionary
    )


def _first_day(
    prescriptions: pd.DataFrame, admissions: pd.DataFrame, path: Path, report: DataReport
) -> pd.DataFrame:
    """Keep prescriptions starting before ``admittime + 24 h`` (counted drops)."""
    from medtoolkit.data.tables import DataFormatError

    if len(prescriptions) and (prescriptions["STARTTIME"] == "").all():
        raise DataFormatError(
            f"{path}: first_day_medications needs column starttime, which is missing or empty"
        )
    start = _parse_times(prescriptions["STARTTIME"], path, "STARTTIME", prescriptions)
    admit = pd.to_datetime(admissions["ADMITTIME"], format=_TIME_FORMAT)
    admit_of = pd.Series(admit.to_numpy(), index=admissions["HADM_ID"].to_numpy())
    limit = prescriptions["HADM_ID"].map(admit_of) + pd.Timedelta(hours=24)
    no_start = start.isna()
    late = ~no_start & (start >= limit)
    report.drop(f"{path.name}: starttime", int(no_start.sum()), "first_day_medications: empty starttime",
                source=path.name)
    report.drop(f"{path.name}: first day", int(late.sum()),
                "first_day_medications: starts 24 h or more after admittime", source=path.name,
                examples=examples(prescriptions.loc[late, "DRUG"]))
    return prescriptions.loc[~(no_start | late)]


def _map_medications(prescriptions: pd.DataFrame, atc_level: int, source: str, report: DataReport) -> pd.DataFrame:
    """NDC -> ATC, then GSN -> ATC, then name -> ATC; unmapped rows dropped and counted."""
    from medtoolkit.knowledge import DrugMapper

    mapper = DrugMapper(source="shipped")
    frame = prescriptions.reset_index(drop=True)
    ndc = frame["NDC"].str.strip()
    atc = pd.Series(mapper.map_ndc(ndc, atc_level=atc_level), dtype="string").reset_index(drop=True)
    record_coverage(report, f"prescriptions: NDC -> ATC{atc_level}", atc.notna(), ndc, source)

    todo = atc.isna()
    gsn_field = frame.loc[todo, "GSN"].str.strip()
    if len(gsn_field):
        by_gsn = pd.Series(mapper.map_gsn(gsn_field, atc_level=atc_level), dtype="string").to_numpy()
        atc = atc.fillna(pd.Series(by_gsn, index=gsn_field.index, dtype="string"))
    record_coverage(report, f"prescriptions: GSN -> ATC{atc_level} (rows without an NDC match)",
                    atc[todo].notna(), gsn_field, source)

    todo = atc.isna()
    names = frame.loc[todo, "DRUG"].str.strip()
    if len(names):
        by_name = pd.Series(mapper.map_name(names, atc_level=atc_level), dtype="string").to_numpy()
        atc = atc.fillna(pd.Series(by_name, index=names.index))
    record_coverage(report, f"prescriptions: drug name -> ATC{atc_level} (rows without NDC/GSN match)",
                    atc[todo].notna(), names, source)
    record_coverage(report, f"prescriptions: any -> ATC{atc_level} (all rows, by drug name)",
                    atc.notna(), frame["DRUG"].str.strip(), source)

    unmapped = atc.isna()
    report.drop(f"{source}: unmapped drugs", int(unmapped.sum()),
                "no ATC code from NDC, GSN or drug name", source=source,
                examples=examples(frame.loc[unmapped, "DRUG"]))
    keep = ~unmapped
    return pd.DataFrame(
        {
            "PATIENT": frame.loc[keep, "SUBJECT_ID"].to_numpy(),
            "VISIT": frame.loc[keep, "HADM_ID"].to_numpy(),
            "CODE": atc[keep].to_numpy(),
        }
    )
