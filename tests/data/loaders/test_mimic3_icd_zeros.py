"""MIMIC-III ICD-9 codes that lost their leading zeros (``0389`` -> ``389``): found and reported.

Each test copies the built-in demo tables into ``tmp_path`` (as ``test_mimic3_malformed``
does), adds small ``D_ICD_*`` dictionaries made from the demo's own codes (the demo ships
none) and strips the zeros of a few codes.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from medtoolkit.data.ehr import DIAGNOSES, PROCEDURES, EHRData
from medtoolkit.data.loaders._raw import icd_zero_repairs
from medtoolkit.data.loaders.mimic3 import MIMIC3Dataset
from medtoolkit.data.report import DataReport

TABLES = ("ADMISSIONS", "DIAGNOSES_ICD", "PROCEDURES_ICD", "PRESCRIPTIONS")


def copy_demo(directory: Path, dictionaries: bool = True) -> Path:
    """The demo tables as plain csv, plus dictionaries listing every code the demo uses."""
    from medtoolkit.resources import demo_path

    source = Path(demo_path("mimic3"))
    directory.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        (directory / f"{name}.csv").write_bytes(gzip.decompress((source / f"{name}.csv.gz").read_bytes()))
    if dictionaries:
        for table, dictionary in (("DIAGNOSES_ICD", "D_ICD_DIAGNOSES"), ("PROCEDURES_ICD", "D_ICD_PROCEDURES")):
            codes = sorted(set(read(directory, table)["ICD9_CODE"]) - {""})
            pd.DataFrame({"ROW_ID": range(1, len(codes) + 1), "ICD9_CODE": codes, "SHORT_TITLE": "t"}).to_csv(
                directory / f"{dictionary}.csv", index=False
            )
    return directory


def read(directory: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(directory / f"{table}.csv", dtype=str, keep_default_na=False)


def strip_zeros(directory: Path, table: str, codes: set[str]) -> int:
    """Write ``codes`` without their leading zeros (as a spreadsheet would); returns rows changed."""
    frame = read(directory, table)
    hit = frame["ICD9_CODE"].isin(codes)
    frame.loc[hit, "ICD9_CODE"] = frame.loc[hit, "ICD9_CODE"].str.lstrip("0")
    frame.to_csv(directory / f"{table}.csv", index=False)
    return int(hit.sum())


def load(root: Path, **options: object) -> EHRData:
    return MIMIC3Dataset(MIMIC3Dataset.Params(root=root, cache=False, substructures=False, **options)).load(
        progress=False
    )


def findings(data: EHRData) -> list[dict[str, object]]:
    return list(data.provenance["report"]["findings"])


def test_stripped_diagnoses_are_counted_and_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = copy_demo(tmp_path / "mimic3")
    known = set(read(root, "DIAGNOSES_ICD")["ICD9_CODE"])
    assert {"0389", "00845"} <= known and not {"389", "845", "0845"} & known
    rows = strip_zeros(root, "DIAGNOSES_ICD", {"0389", "00845"})
    assert rows == 31
    data = load(root)
    (finding,) = findings(data)
    assert finding["step"] == "DIAGNOSES_ICD.csv: ICD9_CODE leading zeros"
    assert (finding["rows"], finding["codes"], finding["action"]) == (31, 2, "kept")
    assert finding["examples"] == ["389 -> 0389", "845 -> 00845"]
    assert "absent from D_ICD_DIAGNOSES" in finding["message"]
    assert "set repair_icd_zeros: true to restore the zeros" in finding["message"]
    assert "389" in data.vocabularies[DIAGNOSES] and "0389" not in data.vocabularies[DIAGNOSES]
    assert "DIAGNOSES_ICD.csv: ICD9_CODE leading zeros: ICD codes absent from D_ICD_DIAGNOSES" in caplog.text
    markdown = DataReport.from_json(data.provenance["report"]).to_markdown()
    assert "| DIAGNOSES_ICD.csv: ICD9_CODE leading zeros | 31 | 2 | kept |" in markdown


def test_repair_restores_the_codes(tmp_path: Path) -> None:
    pristine = load(copy_demo(tmp_path / "pristine"))
    assert findings(pristine) == []
    root = copy_demo(tmp_path / "mimic3")
    rows = strip_zeros(root, "PROCEDURES_ICD", {"0331", "0017"})
    assert rows == 9
    data = load(root, repair_icd_zeros=True)
    (finding,) = findings(data)
    assert finding["step"] == "PROCEDURES_ICD.csv: ICD9_CODE leading zeros"
    assert (finding["rows"], finding["codes"], finding["action"]) == (9, 2, "repaired")
    assert finding["examples"] == ["331 -> 0331", "17 -> 0017"]
    assert data.vocabularies[PROCEDURES] == pristine.vocabularies[PROCEDURES]
    assert data.vocabularies[DIAGNOSES] == pristine.vocabularies[DIAGNOSES]


def test_without_dictionaries_the_check_is_skipped_with_a_note(tmp_path: Path) -> None:
    root = copy_demo(tmp_path / "mimic3", dictionaries=False)
    strip_zeros(root, "DIAGNOSES_ICD", {"0389"})
    data = load(root)
    assert findings(data) == []
    notes = " ".join(data.provenance["report"]["notes"])
    assert "DIAGNOSES_ICD.csv: no D_ICD_DIAGNOSES table, so ICD codes that lost their leading zeros" in notes
    assert "PROCEDURES_ICD.csv: no D_ICD_PROCEDURES table" in notes


def test_icd_zero_repairs_needs_one_unambiguous_match() -> None:
    known = pd.Series(["0389", "0041", "00041", "4019", "V3000", "ICD9:0090"])
    codes = pd.Series(["389", "41", "4019", "V300", "", "3000", "ICD9:90", "ICD10:90"])
    assert icd_zero_repairs(codes, known) == {"389": "0389", "ICD9:90": "ICD9:0090"}
