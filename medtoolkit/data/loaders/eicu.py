"""``eicu``: raw eICU-CRD tables -> :class:`~medtoolkit.data.ehr.EHRData` (multi-centre).

Tables read (csv or csv.gz, any case): ``patient``, ``diagnosis``, ``treatment``,
``medication`` and, when present, ``hospital``. ``root=None`` loads the eICU-CRD Demo 2.0
that ships with the package (ODbL 1.0; 2,520 ICU stays, 186 hospitals).

Patients, visits, hospitals
    A visit is one ICU unit stay (``patientunitstayid``); a patient is ``uniquepid`` (not the
    hospital stay ``patienthealthsystemstayid``, which is what TEMPT calls "subject").
    ``EHRData.hospital`` is a 0-based index per visit; ``provenance["hospital_ids"][i]`` is
    the original ``hospitalid`` of index ``i``.

Order of the stays of a patient
    eICU has no absolute dates: every offset is in minutes relative to the *unit* admission
    of its own stay. ``hospitaladmitoffset`` is the hospital admission minus the unit
    admission (negative), so the unit admission happened ``-hospitaladmitoffset`` minutes
    after the hospital admission; sorting by ``hospitaladmitoffset`` ascending would put the
    later unit stay first. Stays are therefore ordered by

    1. ``hospitaldischargeyear`` (the only cross-hospital-stay time; blank = last),
    2. ``patienthealthsystemstayid`` (keeps the unit stays of one hospital stay together;
       for two hospital stays in the same year eICU gives *no* order: this tie-break is
       arbitrary but deterministic, and the number of patients affected is reported),
    3. ``-hospitaladmitoffset`` (minutes from hospital admission to unit admission),
    4. ``unitvisitnumber``, then ``patientunitstayid``.

    ``EHRData.time`` holds the stay's rank within its patient (0, 1, ...): an order, not a
    duration.

Codes
    ``diagnosis.icd9code`` holds strings like ``"401.9, I10"`` (ICD-9 first, then ICD-10).
    They are split on commas, stripped, blanks dropped, and each code written
    ``ICD9:<code>`` or ``ICD10:<code>`` (with eICU's dots). A code is ICD-9 when it looks like
    ``ddd[.dd]``, ``dd[.dd]`` (procedure), ``Vdd[.dd]`` or ``Eddd[.d]`` and ICD-10 when it looks
    like a letter, a digit, a digit or letter, then optionally ``.`` and up to 4 characters.
    ``Vdd[.dd]`` fits both: it is ICD-9 when it comes before the first unambiguous ICD-10
    code of its string (the field lists ICD-9 codes first), else ICD-10. Tokens of neither
    shape are dropped and counted. ``treatment.treatmentstring`` paths
    (``cardiovascular|...|enoxaparin``) are the procedure codes, verbatim.

    eICU ships no ICD dictionary table (no ``D_ICD_*`` like MIMIC), so ICD-9 codes that lost
    their leading zeros in a spreadsheet round trip (``038.9`` -> ``38.9``) cannot be told
    from real codes: this loader does not detect them and keeps every code as written (the
    MIMIC loaders detect and report them; see ``repair_icd_zeros`` there).

Medications
    Cancelled orders (``drugordercancelled == "Yes"``) are dropped and counted (TEMPT's
    public code keeps them). The drug code is chosen by ``drug_code``:

    ``hicl`` (as TEMPT)
        ``drughiclseqno`` itself, written ``HICL:<n>`` (integer text without leading zeros;
        ``"2812.0"`` -> ``HICL:2812``). Rows without a HICL, or with one that is not a
        non-negative integer, are dropped and counted. There is no DDI matrix, SMILES or
        substructure for HICL codes (the shipped knowledge is keyed by ATC):
        :meth:`EICUDataset.knowledge_provided` says so, ``medtoolkit validate`` refuses the
        ``ddi`` loss and DDI-based components, and DDI rates are reported as n/a.

    ``atc`` (default)
        ``drugname`` is mapped to ATC with :meth:`DrugMapper.map_name` (MIMIC drug names,
        case-insensitive) in three steps, each offered only the rows still unmapped: the
        name as written; its product part (after the last ``:``, before the first digit:
        ``"5 ML VIAL : DILTIAZEM HCL 25 MG"`` -> ``"DILTIAZEM HCL"``); the first word of
        that part (4+ letters, e.g. ``"WARFARIN"``; an approximation: ``VANCOMYCIN`` gets
        the class most MIMIC rows of that name have). eICU gives no NDC or ATC, but most
        rows carry a HICL (``drughiclseqno``, a product-group id) and many have no name.
        From the rows whose name maps, a HICL -> ATC table is learned (per HICL the ATC seen
        on most rows, ties by smaller code); rows whose name does not map take their HICL's
        ATC. Rows left unmapped are dropped and counted. Both steps' coverage is in the
        report.

Top-N filters
    ``top_diagnoses``, ``top_procedures`` and ``top_medications`` keep exactly N codes of
    their kind (TEMPT's ``loc[:300]`` keeps 301): the codes held by the most stays (a code
    counts once per stay), among the stays still in play (those of the kept hospitals,
    before stays without diagnoses, treatments or medications are dropped), ties broken by
    the code text in ascending order. Stays left without any code of a kind are then
    dropped with the incomplete stays; the report counts the rows each filter removes and,
    in the same entry, the stays that lost every code of that kind.

Assembly (:func:`medtoolkit.data.assemble.assemble_ehr`) applies the top-N filters, keeps
stays with diagnoses, treatments and medications, then applies ``min_visits``; afterwards
hospitals with fewer than ``min_stays_per_hospital`` kept stays are removed and the data
assembled again without them (repeated until stable; the top-N codes are counted again on
the remaining hospitals each round, so the vocabularies describe the data that is kept).

``provenance["hospital_jsd"]`` summarises the pairwise Jensen-Shannon divergence (bits)
between the kept hospitals' prescription distributions
(:func:`medtoolkit.data.divergence.hospital_divergence_summary`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from medtoolkit.components.base import Dataset
from medtoolkit.components.params import Params as BaseParams
from medtoolkit.data.divergence import hospital_divergence_summary
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.loaders._raw import (
    cached_raw_build,
    dataset_name,
    drug_knowledge_factory,
    engine_field,
    examples,
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
#: (2: top_medications / top_procedures / drug_code, hospital_jsd in the provenance)
LOADER_VERSION = 2
_TABLES = ("patient", "diagnosis", "treatment", "medication")
_OPTIONAL_TABLES = ("hospital",)
#: ICD-9 diagnosis (ddd.dd), ICD-9 procedure (dd.dd), V and E codes
ICD9_PATTERN = r"(?:\d{3}(?:\.\d{1,2})?|\d{2}(?:\.\d{1,2})?|V\d{2}(?:\.\d{1,2})?|E\d{3}(?:\.\d)?)"
#: ICD-10(-CM): letter, digit, digit/letter, optional extension
ICD10_PATTERN = r"[A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?"
_MAX_HOSPITAL_ROUNDS = 10


class EICUDataset(Dataset):
    """eICU-CRD tables as :class:`EHRData` with hospitals (see the module docstring for the rules).

    Vocabularies: ``diagnoses`` (``ICD9:<code>`` / ``ICD10:<code>``), ``procedures``
    (``treatmentstring`` paths), ``medications`` (ATC codes of ``atc_level``, or
    ``HICL:<n>`` with ``drug_code="hicl"``).
    ``patient_ids`` are ``uniquepid``; ``hospital`` is a 0-based index per stay.
    """

    class Params(BaseParams):
        """Where the tables are and how to process them.

        Attributes:
            root: directory holding the eICU tables; None loads the built-in demo.
            atc_level: ATC level of the medication codes (``drug_code="atc"`` only).
            drug_code: ``"atc"`` (drug names mapped to ATC, with DDI knowledge) or
                ``"hicl"`` (``drughiclseqno`` as in TEMPT; no DDI knowledge).
            top_diagnoses: keep the most frequent diagnosis codes (None keeps all).
            top_procedures: keep the N treatment paths held by the most stays (None: all).
            top_medications: keep the N drug codes held by the most stays (None: all).
            min_visits: drop patients with fewer kept stays.
            min_stays_per_hospital: drop hospitals with fewer kept stays (after assembly).
            cache: reuse a cached build when inputs and options are unchanged.
            cache_dir: where cached builds live (None: the default cache directory).
            cache_mmap: memory-map a cached build's arrays read-only (the default; shared by every
                process that loads the entry), or read them into memory.
            engine: CSV engine, ``"arrow"`` (pyarrow, default; pandas when pyarrow is missing) or
                ``"pandas"``; both give the same data, so it is not part of the cache key.
        """

        root: Path | None = Field(None, description="directory with the eICU tables; None = built-in demo")
        atc_level: Literal[3, 4] = Field(3, description="ATC level of the medication codes (drug_code=atc)")
        drug_code: Literal["atc", "hicl"] = Field(
            "atc", description="medication code: atc (mapped from drugname/HICL) or hicl (drughiclseqno, no DDI)"
        )
        top_diagnoses: int | None = Field(2000, ge=1, description="keep the N most frequent diagnoses (None: all)")
        top_procedures: int | None = Field(
            None, ge=1, description="keep the N treatment paths held by the most stays (None: all)"
        )
        top_medications: int | None = Field(
            None, ge=1, description="keep the N drug codes held by the most stays (None: all)"
        )
        min_visits: int = Field(1, ge=1, description="drop patients with fewer stays (applied after other filters)")
        min_stays_per_hospital: int = Field(1, ge=1, description="drop hospitals with fewer kept stays")
        cache: bool = Field(True, description="reuse a cached build when inputs and options are unchanged")
        cache_dir: Path | None = Field(None, description="cache directory (None: default)")
        cache_mmap: bool = Field(
            True, description="memory-map a cached build's arrays read-only (False: read them into memory)"
        )
        engine: Literal["arrow", "pandas"] = engine_field()

    params: Params
    source_name: ClassVar[str] = "eicu"

    @classmethod
    def knowledge_provided(cls, params: BaseParams) -> frozenset[str] | None:
        """With ATC codes the shipped drug knowledge: ``"ddi"``, ``"smiles"``, and
        ``"substructures"`` when rdkit is installed
        (:func:`medtoolkit.knowledge.drug_knowledge_names`); with HICL codes none."""
        from medtoolkit.knowledge import drug_knowledge_names

        if getattr(params, "drug_code", "atc") == "hicl":
            return frozenset()
        return drug_knowledge_names()

    # ------------------------------------------------------------------ public
    def load(self, progress: bool = True) -> EHRData:
        """Read the tables (or a cached build) and assemble the dataset.

        Args:
            progress: log each table as it is read (INFO level).

        Returns:
            the dataset; ``provenance["report"]`` holds every drop and the mapping coverage,
            ``provenance["hospital_ids"]`` the original ``hospitalid`` of each hospital index.

        Raises:
            FileNotFoundError: the directory or a table is missing.
            medtoolkit.data.tables.DataFormatError: a table has a missing column or a bad
                value (the message names file, line and column).
        """
        directory, paths = self._locate()
        return cached_raw_build(
            self.params, self.source_name, LOADER_VERSION, list(paths.values()),
            build=lambda: self._build(directory, paths, progress),
            name=dataset_name(self.source_name, None if self.params.root is None else directory),
        )

    # ------------------------------------------------------------------ files
    def _locate(self) -> tuple[Path, dict[str, Path]]:
        directory = raw_root(self.params.root, "eicu")
        if not directory.is_dir():
            raise FileNotFoundError(f"eicu: root {directory} is not a directory (expected the eICU tables)")
        return directory, locate_tables(directory, _TABLES, _OPTIONAL_TABLES, "eicu")

    # ------------------------------------------------------------------ build
    def _build(self, directory: Path, paths: Mapping[str, Path], progress: bool) -> EHRData:
        report = DataReport()
        p = self.params

        read = table_reader(paths, report, "eicu", progress, engine=p.engine)

        patient = read(
            "patient",
            {
                "PATIENTUNITSTAYID": "str", "PATIENTHEALTHSYSTEMSTAYID": "str", "UNIQUEPID": "str",
                "HOSPITALID": "str", "HOSPITALADMITOFFSET": "int", "UNITVISITNUMBER": "int",
                "HOSPITALDISCHARGEYEAR": "int?",
            },
            optional=("HOSPITALDISCHARGEYEAR",),
        )
        visits, order_facts = _visits(patient, paths["patient"], report)
        stays = pd.Index(visits["VISIT"])

        diagnosis = read("diagnosis", {"PATIENTUNITSTAYID": "str", "ICD9CODE": "str"})
        diagnosis = _known_stays(diagnosis, stays, report, paths["diagnosis"].name)
        treatment = read("treatment", {"PATIENTUNITSTAYID": "str", "TREATMENTSTRING": "str"})
        treatment = _known_stays(treatment, stays, report, paths["treatment"].name)
        medication = read(
            "medication",
            {"PATIENTUNITSTAYID": "str", "DRUGNAME": "str", "DRUGHICLSEQNO": "str", "DRUGORDERCANCELLED": "str"},
            optional=("DRUGORDERCANCELLED",),
        )
        medication = _known_stays(medication, stays, report, paths["medication"].name)

        patient_of = pd.Series(visits["PATIENT"].to_numpy(), index=visits["VISIT"].to_numpy())
        medication = _without_cancelled(medication, paths["medication"].name, report)
        if p.drug_code == "hicl":
            drug_codes = _hicl_codes(medication, paths["medication"].name, report)
        else:
            drug_codes = _medication_codes(medication, p.atc_level, paths["medication"].name, report)
        events = {
            DIAGNOSES: _with_patient(_diagnosis_codes(diagnosis, paths["diagnosis"].name, report), patient_of),
            PROCEDURES: _with_patient(_treatment_codes(treatment, paths["treatment"].name, report), patient_of),
            MEDICATIONS: _with_patient(drug_codes, patient_of),
        }
        hospital_facts = _check_hospitals(visits, paths, report, read)
        return self._assemble(events, visits, report, directory, paths, order_facts, hospital_facts)

    def _assemble(
        self,
        events: dict[str, pd.DataFrame],
        visits: pd.DataFrame,
        report: DataReport,
        directory: Path,
        paths: Mapping[str, Path],
        order_facts: dict[str, int],
        hospital_facts: dict[str, object],
    ) -> EHRData:
        """Assemble; drop hospitals under ``min_stays_per_hospital`` and reassemble until stable."""
        from medtoolkit.data.assemble import assemble_ehr

        p = self.params
        top_n = {DIAGNOSES: p.top_diagnoses, PROCEDURES: p.top_procedures, MEDICATIONS: p.top_medications}
        # hospitals as integer codes in ascending (numeric when possible) hospitalid order
        hospital_codes, hospital_originals = _factorize_ids(visits["HOSPITAL"])
        current = visits.assign(HOSPITAL=hospital_codes)
        removed: list[int] = []
        removed_stays = 0
        for _ in range(_MAX_HOSPITAL_ROUNDS):
            trial = DataReport(drops=list(report.drops), coverages=list(report.coverages), notes=list(report.notes))
            if removed:
                trial.drop(
                    "hospitals: min_stays_per_hospital", len(removed),
                    f"fewer than {p.min_stays_per_hospital} kept stays; their {removed_stays} stays were "
                    "removed before assembly and the data assembled again",
                    source=paths["patient"].name, examples=[str(hospital_originals[c]) for c in removed],
                )
            data = assemble_ehr(
                {kind: frame[frame["VISIT"].isin(current["VISIT"])] for kind, frame in events.items()},
                current[["PATIENT", "VISIT", "TIME", "HOSPITAL"]],
                _no_drug_knowledge if p.drug_code == "hicl" else drug_knowledge_factory(p.atc_level),
                name=dataset_name(self.source_name, None if p.root is None else directory),
                report=trial,
                min_visits=p.min_visits,
                top_n=top_n,
                provenance={},
            )
            assert data.hospital is not None
            counts = np.bincount(data.hospital, minlength=len(hospital_originals))
            small = np.flatnonzero((counts > 0) & (counts < p.min_stays_per_hospital))
            if len(small) == 0:
                break
            if len(small) == int((counts > 0).sum()):
                raise ValueError(
                    f"eicu: min_stays_per_hospital={p.min_stays_per_hospital} removes every hospital: the "
                    f"largest has {int(counts.max())} kept stays with these options; lower "
                    "min_stays_per_hospital (the built-in demo's hospitals are tiny)"
                )
            removed += [int(c) for c in small]
            drop_mask = current["HOSPITAL"].isin(small).to_numpy()
            removed_stays += int(drop_mask.sum())
            current = current.loc[~drop_mask]
        else:  # pragma: no cover - needs pathological data
            raise RuntimeError("eicu: min_stays_per_hospital did not settle after 10 rounds")

        present, index = np.unique(data.hospital, return_inverse=True)
        data.hospital = index.astype(np.int32)
        hospital_ids = [str(hospital_originals[c]) for c in present]
        data.provenance.update(
            {
                "source": self.source_name,
                "root": str(directory),
                "demo": p.root is None,
                "files": {path.name: {"table": name, "sha256": sha256_file(path)} for name, path in paths.items()},
                "options": p.model_dump(mode="json"),
                "code_format": {
                    DIAGNOSES: "ICD9:<code> | ICD10:<code> (split from diagnosis.icd9code)",
                    PROCEDURES: "treatment.treatmentstring path",
                    MEDICATIONS: "HICL:<drughiclseqno>" if p.drug_code == "hicl"
                    else f"ATC level {p.atc_level} (drugname, then HICL learned from named rows)",
                },
                "visit_order": "hospitaldischargeyear, patienthealthsystemstayid, -hospitaladmitoffset, "
                "unitvisitnumber; time = rank of the stay within its patient",
                "visit_order_facts": order_facts,
                "hospital_ids": hospital_ids,
                "hospitals": {**hospital_facts, "kept": len(hospital_ids)},
                "hospital_jsd": hospital_divergence_summary(data, len(hospital_ids)),
            }
        )
        data.validate()
        return data


def _no_drug_knowledge(med_codes: list[str]) -> DrugKnowledge:
    """Knowledge for HICL codes: none (no DDI matrix, no SMILES; the shipped files use ATC)."""
    return DrugKnowledge(
        ddi_adjacency=None,
        provenance={"ddi": "none: HICL drug codes (drug_code=hicl); the shipped DDI/SMILES knowledge is keyed by ATC"},
    )


def _factorize_ids(ids: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes of ids in ascending order (numeric when every id is an integer)."""
    text = ids.astype(str).str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if len(text) and not numeric.isna().any():
        uniques = np.unique(numeric.to_numpy(dtype=np.int64))
        codes = np.searchsorted(uniques, numeric.to_numpy(dtype=np.int64))
        return codes.astype(np.int64), [str(u) for u in uniques]
    codes, uniques = pd.factorize(text, sort=True)
    return codes.astype(np.int64), [str(u) for u in uniques]


# ---------------------------------------------------------------------- steps
def _visits(patient: pd.DataFrame, path: Path, report: DataReport) -> tuple[pd.DataFrame, dict[str, int]]:
    """``patient`` -> ``[PATIENT, VISIT, TIME, HOSPITAL]`` in chronological order per patient."""
    from medtoolkit.data.tables import DataFormatError

    repeated = patient["PATIENTUNITSTAYID"].duplicated(keep=False)
    if repeated.any():
        line = int(patient.index[repeated.to_numpy().nonzero()[0][0]])
        raise DataFormatError(
            f"{path}: line {line}, column patientunitstayid: stay "
            f"{patient.loc[repeated, 'PATIENTUNITSTAYID'].iloc[0]!r} appears on several rows with different values"
        )
    for column in ("UNIQUEPID", "HOSPITALID", "PATIENTUNITSTAYID"):
        blank = patient[column].str.strip() == ""
        if blank.any():
            line = int(patient.index[blank.to_numpy().nonzero()[0][0]])
            raise DataFormatError(f"{path}: line {line}, column {column.lower()}: empty ({int(blank.sum())} rows)")
    year = patient["HOSPITALDISCHARGEYEAR"]
    year = pd.to_numeric(year, errors="coerce") if year.dtype == object or str(year.dtype) == "str" else year
    frame = pd.DataFrame(
        {
            "PATIENT": patient["UNIQUEPID"].str.strip().to_numpy(),
            "VISIT": patient["PATIENTUNITSTAYID"].str.strip().to_numpy(),
            "HOSPITAL": patient["HOSPITALID"].str.strip().to_numpy(),
            "HS_STAY": patient["PATIENTHEALTHSYSTEMSTAYID"].str.strip().to_numpy(),
            "YEAR": pd.array(year.to_numpy(dtype="float64", na_value=np.nan), dtype="float64"),
            "UNIT_AFTER_HOSPITAL": -patient["HOSPITALADMITOFFSET"].to_numpy(dtype=np.int64),
            "UNITVISITNUMBER": patient["UNITVISITNUMBER"].to_numpy(dtype=np.int64),
        }
    )
    frame["HS_KEY"] = pd.to_numeric(frame["HS_STAY"], errors="coerce")
    frame["STAY_KEY"] = pd.to_numeric(frame["VISIT"], errors="coerce")
    frame = frame.sort_values(
        ["PATIENT", "YEAR", "HS_KEY", "HS_STAY", "UNIT_AFTER_HOSPITAL", "UNITVISITNUMBER", "STAY_KEY", "VISIT"],
        na_position="last", kind="stable",
    ).reset_index(drop=True)
    frame["TIME"] = frame.groupby("PATIENT", sort=False).cumcount().astype("float64")

    hospital_stays = frame.drop_duplicates(["PATIENT", "HS_STAY"])
    per_year = hospital_stays.groupby(["PATIENT", "YEAR"], dropna=False).size()
    ambiguous_patients = int(per_year[per_year > 1].index.get_level_values(0).nunique())
    unit_order = frame.groupby(["PATIENT", "HS_STAY"], sort=False)["UNITVISITNUMBER"].diff()
    disagreements = int((unit_order < 0).sum())
    facts = {
        "patients": int(frame["PATIENT"].nunique()),
        "stays": int(len(frame)),
        "patients_with_several_hospital_stays": int(
            (hospital_stays.groupby("PATIENT").size() > 1).sum()
        ),
        "patients_with_unordered_hospital_stays": ambiguous_patients,
        "stays_without_discharge_year": int(frame["YEAR"].isna().sum()),
        "unitvisitnumber_disagrees_with_offsets": disagreements,
    }
    report.note(
        "eICU has no absolute dates: stays are ordered by hospitaldischargeyear, then hospital stay "
        "(patienthealthsystemstayid), then minutes from hospital to unit admission (-hospitaladmitoffset), "
        f"then unitvisitnumber; {ambiguous_patients} patients have two or more hospital stays in one "
        "discharge year, whose relative order is unknown (tie-break: patienthealthsystemstayid)"
    )
    if disagreements:
        report.note(
            f"{disagreements} unit stays have a unitvisitnumber smaller than an earlier stay of the same "
            "hospital stay (ordered by -hospitaladmitoffset)"
        )
    return frame[["PATIENT", "VISIT", "TIME", "HOSPITAL"]], facts


def _known_stays(frame: pd.DataFrame, stays: pd.Index, report: DataReport, source: str) -> pd.DataFrame:
    """Keep rows whose ``patientunitstayid`` is in ``patient``; count the rest."""
    stay = frame["PATIENTUNITSTAYID"].str.strip()
    known = stay.isin(stays)
    report.drop(f"{source}: stay", int((~known).sum()), "patientunitstayid empty or not in patient",
                source=source, examples=examples(stay[~known]))
    result = frame.loc[known].copy()
    result["PATIENTUNITSTAYID"] = stay[known]
    return result


def _with_patient(events: pd.DataFrame, patient_of: pd.Series) -> pd.DataFrame:
    """Add ``PATIENT`` to ``[VISIT, CODE]`` events."""
    return pd.DataFrame(
        {
            "PATIENT": events["VISIT"].map(patient_of).to_numpy(),
            "VISIT": events["VISIT"].to_numpy(),
            "CODE": events["CODE"].to_numpy(),
        }
    )


def split_icd_codes(values: pd.Series) -> pd.DataFrame:
    """Split eICU ``icd9code`` strings into classified codes (vectorised).

    Args:
        values: ``icd9code`` strings such as ``"401.9, I10"``, indexed by row.

    Returns:
        one row per non-blank token, index = the source row: ``TOKEN`` (stripped),
        ``POSITION`` (0-based within its string) and ``REVISION`` (``"ICD9"``, ``"ICD10"``
        or ``""`` when the token has neither shape).
    """
    tokens = values.astype("string").str.split(",").explode()
    tokens = tokens.str.strip().fillna("")
    position = tokens.groupby(level=0, sort=False).cumcount()
    frame = pd.DataFrame({"TOKEN": tokens.to_numpy(), "POSITION": position.to_numpy()}, index=tokens.index)
    frame = frame[frame["TOKEN"] != ""]
    looks9 = frame["TOKEN"].str.fullmatch(ICD9_PATTERN).fillna(False).astype(bool)
    looks10 = frame["TOKEN"].str.fullmatch(ICD10_PATTERN).fillna(False).astype(bool)
    sure10 = looks10 & ~looks9
    first10 = frame["POSITION"].where(sure10).groupby(level=0, sort=False).transform("min")
    ambiguous = looks9 & looks10
    as10 = sure10 | (ambiguous & (frame["POSITION"] > first10).fillna(False).astype(bool))
    as9 = looks9 & ~as10
    revision = np.where(as10, "ICD10", np.where(as9, "ICD9", ""))
    frame["REVISION"] = revision
    return frame


def _diagnosis_codes(diagnosis: pd.DataFrame, source: str, report: DataReport) -> pd.DataFrame:
    """``diagnosis`` rows -> ``[VISIT, CODE]`` with one row per ICD code."""
    text = diagnosis["ICD9CODE"].str.strip()
    empty = text == ""
    report.drop(f"{source}: icd9code", int(empty.sum()), "empty icd9code", source=source)
    rows = diagnosis.loc[~empty]
    split = split_icd_codes(text[~empty])
    raw_tokens = text[~empty].str.split(",").explode().str.strip()
    report.drop(f"{source}: icd9code tokens", int((raw_tokens == "").sum()),
                "blank item in a comma-separated icd9code", source=source)
    unknown = split["REVISION"] == ""
    report.drop(f"{source}: icd9code tokens", int(unknown.sum()),
                "neither ICD-9 nor ICD-10 shaped", source=source, examples=examples(split.loc[unknown, "TOKEN"]))
    split = split.loc[~unknown]
    ambiguous = split["TOKEN"].str.fullmatch(ICD9_PATTERN) & split["TOKEN"].str.fullmatch(ICD10_PATTERN)
    if ambiguous.any():
        report.note(
            f"{int(ambiguous.sum())} diagnosis codes fit both ICD-9 (Vdd.dd) and ICD-10 shapes; revision taken "
            "from their place in the string (before the first ICD-10 code = ICD-9)"
        )
    stay = rows["PATIENTUNITSTAYID"].reindex(split.index)
    # the index of ``rows`` is unique (file lines), so reindex aligns each token with its row
    return pd.DataFrame(
        {
            "VISIT": stay.to_numpy(),
            "CODE": prefixed(split["TOKEN"], split["REVISION"] == "ICD10").to_numpy(),
        }
    )


def _treatment_codes(treatment: pd.DataFrame, source: str, report: DataReport) -> pd.DataFrame:
    """``treatment`` rows -> ``[VISIT, CODE]`` with the ``treatmentstring`` path as code."""
    code = treatment["TREATMENTSTRING"].str.strip()
    empty = code == ""
    report.drop(f"{source}: treatmentstring", int(empty.sum()), "empty treatmentstring", source=source)
    return pd.DataFrame(
        {"VISIT": treatment.loc[~empty, "PATIENTUNITSTAYID"].to_numpy(), "CODE": code[~empty].to_numpy()}
    )


def hicl_to_atc(hicl: pd.Series, atc: pd.Series) -> tuple[pd.Series, int]:
    """Learn HICL -> ATC from rows whose ATC is known.

    Args:
        hicl: per row, the HICL (``""`` when absent).
        atc: per row, the ATC from the drug name (NA when unmapped).

    Returns:
        (HICL -> ATC series: per HICL the ATC on most rows, ties by smaller code;
        number of HICLs seen with more than one ATC).
    """
    known = (hicl != "") & atc.notna()
    pairs = pd.DataFrame({"HICL": hicl[known].to_numpy(), "ATC": atc[known].astype(str).to_numpy()})
    counts = pairs.groupby(["HICL", "ATC"], sort=True).size().rename("N").reset_index()
    conflicts = int((counts.groupby("HICL").size() > 1).sum())
    best = counts.sort_values(["HICL", "N", "ATC"], ascending=[True, False, True], kind="stable")
    best = best.drop_duplicates("HICL", keep="first")
    return pd.Series(best["ATC"].to_numpy(), index=best["HICL"].to_numpy(), dtype="string"), conflicts


def product_name(names: pd.Series) -> pd.Series:
    """The product part of an eICU ``drugname``: after the last ``:``, before the first digit.

    ``"5 ML VIAL : DILTIAZEM HCL 25 MG/5ML IV SOLN"`` -> ``"DILTIAZEM HCL"``.
    """
    part = names.astype("string").fillna("").str.split(":").str[-1].fillna("")
    return part.str.replace(r"\s*\d.*$", "", regex=True).str.strip()


def first_word(names: pd.Series) -> pd.Series:
    """The first word of at least 4 letters (hyphens allowed), else ``""``."""
    word = names.astype("string").str.extract(r"^([A-Za-z][A-Za-z\-]{3,})", expand=False)
    return word.fillna("")


def _without_cancelled(medication: pd.DataFrame, source: str, report: DataReport) -> pd.DataFrame:
    """Drop (and count) cancelled orders; the index is reset."""
    cancelled = medication["DRUGORDERCANCELLED"].str.strip().str.lower() == "yes"
    report.drop(f"{source}: cancelled", int(cancelled.sum()), "drugordercancelled == 'Yes'", source=source,
                examples=examples(medication.loc[cancelled, "DRUGNAME"]))
    return medication.loc[~cancelled].reset_index(drop=True)


def hicl_codes(values: pd.Series) -> pd.Series:
    """``drughiclseqno`` texts -> ``HICL:<n>`` codes (NA when blank or not an integer).

    ``" 02812.0 "`` -> ``"HICL:2812"``: integer text, optionally with a zero decimal part
    (pandas writes integer columns with blanks as floats), leading zeros removed.
    """
    text = values.astype("string").fillna("").str.strip()
    integral = text.str.fullmatch(r"\d+(?:\.0*)?").fillna(False).astype(bool)
    digits = text.str.replace(r"\..*$", "", regex=True).str.lstrip("0").replace("", "0")
    return ("HICL:" + digits).where(integral, pd.NA)


def _hicl_codes(medication: pd.DataFrame, source: str, report: DataReport) -> pd.DataFrame:
    """Uncancelled ``medication`` rows -> ``[VISIT, CODE]`` with ``HICL:<n>`` codes."""
    hicl = medication["DRUGHICLSEQNO"].str.strip()
    code = hicl_codes(hicl)
    blank = hicl == ""
    malformed = ~blank & code.isna()
    names = medication["DRUGNAME"].str.strip()
    report.drop(f"{source}: no drughiclseqno", int(blank.sum()), "drughiclseqno empty (drug_code=hicl)",
                source=source, examples=examples(names[blank]))
    report.drop(f"{source}: drughiclseqno", int(malformed.sum()),
                "drughiclseqno is not a non-negative integer (drug_code=hicl)",
                source=source, examples=examples(hicl[malformed]))
    record_coverage(report, "medication: drughiclseqno -> HICL code", code.notna(), hicl, source)
    keep = code.notna().to_numpy()
    return pd.DataFrame({"VISIT": medication.loc[keep, "PATIENTUNITSTAYID"].to_numpy(),
                         "CODE": code[keep].astype(str).to_numpy()})


def _medication_codes(frame: pd.DataFrame, atc_level: int, source: str, report: DataReport) -> pd.DataFrame:
    """Uncancelled ``medication`` rows -> ``[VISIT, CODE]`` with ATC codes (name, then learned HICL)."""
    from medtoolkit.knowledge import DrugMapper

    names = frame["DRUGNAME"].str.strip()
    hicl = frame["DRUGHICLSEQNO"].str.strip().str.replace(r"\.0+$", "", regex=True)

    mapper = DrugMapper(source="shipped")
    atc = pd.Series(mapper.map_name(names, atc_level=atc_level), dtype="string").reset_index(drop=True)
    record_coverage(report, f"medication: drugname (exact) -> ATC{atc_level}", atc.notna(), names, source)
    for step, candidate in (
        ("drugname product part", product_name(names)),
        ("first word of the product part", first_word(product_name(names))),
    ):
        todo = atc.isna()
        offered = candidate[todo]
        if len(offered):
            found = pd.Series(mapper.map_name(offered, atc_level=atc_level), dtype="string").to_numpy()
            atc = atc.fillna(pd.Series(found, index=offered.index, dtype="string"))
        record_coverage(report, f"medication: {step} -> ATC{atc_level} (rows not mapped before)",
                        atc[todo].notna(), offered, source)

    table, conflicts = hicl_to_atc(hicl, atc)
    todo = atc.isna()
    atc = atc.fillna(hicl.map(table).astype("string"))
    record_coverage(report, f"medication: HICL -> ATC{atc_level} (learned from named rows; rows without a name match)",
                    atc[todo].notna(), hicl[todo], source)
    record_coverage(report, f"medication: any -> ATC{atc_level} (all rows, by HICL)", atc.notna(), hicl, source)
    report.note(
        f"HICL -> ATC learned from {len(table)} HICLs of rows whose drugname maps "
        f"({conflicts} HICLs seen with more than one ATC: the most frequent wins)"
    )

    unmapped = atc.isna()
    report.drop(f"{source}: unmapped drugs", int(unmapped.sum()), "no ATC from drugname or HICL",
                source=source, examples=examples(_label(names[unmapped], hicl[unmapped])))
    keep = ~unmapped
    return pd.DataFrame({"VISIT": frame.loc[keep, "PATIENTUNITSTAYID"].to_numpy(), "CODE": atc[keep].to_numpy()})


def _label(names: pd.Series, hicl: pd.Series) -> pd.Series:
    """Drug name, or ``hicl <id>`` / ``<no name, no hicl>`` when the name is blank."""
    fallback = ("hicl " + hicl).where(hicl != "", "<no name, no hicl>")
    return names.where(names != "", fallback)


def _check_hospitals(
    visits: pd.DataFrame, paths: Mapping[str, Path], report: DataReport, read: Any
) -> dict[str, object]:
    """Facts about hospitals; with a ``hospital`` table, count stays of unlisted hospitals."""
    facts: dict[str, object] = {"in_patient_table": int(visits["HOSPITAL"].nunique())}
    if "hospital" in paths:
        listed = read("hospital", {"HOSPITALID": "str"})["HOSPITALID"].str.strip()
        unlisted = ~visits["HOSPITAL"].isin(listed)
        facts["in_hospital_table"] = int(listed.nunique())
        facts["stays_with_unlisted_hospital"] = int(unlisted.sum())
        if unlisted.any():
            report.note(f"{int(unlisted.sum())} stays name a hospitalid missing from {paths['hospital'].name} (kept)")
    return facts
