"""The MIMIC-III shaped raw-table generator: columns, values, sizes, determinism, loadability."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import medtoolkit.knowledge
from medtoolkit.data.raw_generator import (
    ADMISSIONS_COLUMNS,
    ICD_COLUMNS,
    PRESCRIPTIONS_COLUMNS,
    write_mimic3_tables,
)

ROWS = 20_000


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("raw")
    return root, write_mimic3_tables(root, ROWS, seed=3)


def _read(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / f"{name}.csv", dtype=str, keep_default_na=False)


def test_columns_and_counts(tables: tuple[Path, dict]) -> None:
    root, counts = tables
    admissions, diagnoses = _read(root, "ADMISSIONS"), _read(root, "DIAGNOSES_ICD")
    procedures, prescriptions = _read(root, "PROCEDURES_ICD"), _read(root, "PRESCRIPTIONS")
    assert tuple(admissions.columns) == ADMISSIONS_COLUMNS
    assert tuple(diagnoses.columns) == ICD_COLUMNS == tuple(procedures.columns)
    assert tuple(prescriptions.columns) == PRESCRIPTIONS_COLUMNS
    assert len(prescriptions) == counts["prescriptions"] == ROWS
    assert len(admissions) == counts["admissions"] and len(diagnoses) == counts["diagnoses"]
    assert len(procedures) == counts["procedures"]
    assert admissions["SUBJECT_ID"].nunique() == counts["patients"] < counts["admissions"]
    assert 40 <= ROWS / counts["admissions"] <= 100  # about 70 prescriptions per admission
    assert prescriptions["ROW_ID"].astype(int).tolist() == list(range(1, ROWS + 1))
    for frame in (diagnoses, procedures, prescriptions):  # every event belongs to an admission
        assert set(frame["HADM_ID"]) <= set(admissions["HADM_ID"])
        pairs = set(zip(frame["SUBJECT_ID"], frame["HADM_ID"]))
        assert pairs <= set(zip(admissions["SUBJECT_ID"], admissions["HADM_ID"]))


def test_values_are_realistic(tables: tuple[Path, dict]) -> None:
    root, counts = tables
    admissions, prescriptions = _read(root, "ADMISSIONS"), _read(root, "PRESCRIPTIONS")
    for column in ("ADMITTIME", "DISCHTIME"):
        assert admissions[column].str.fullmatch(r"2[01]\d\d-\d\d-\d\d \d\d:\d\d:\d\d").all()
    admit = pd.to_datetime(admissions["ADMITTIME"])
    assert (pd.to_datetime(admissions["DISCHTIME"]) > admit).all()
    assert prescriptions["STARTDATE"].str.fullmatch(r"2[01]\d\d-\d\d-\d\d 00:00:00").all()
    assert (pd.to_datetime(prescriptions["ENDDATE"]) > pd.to_datetime(prescriptions["STARTDATE"])).all()
    ndc = prescriptions["NDC"]
    assert ndc.str.fullmatch(r"\d{11}|0").all()
    assert 0.01 < (ndc == "0").mean() < 0.06  # about 3 % unknown
    assert counts["prescriptions_zero_ndc"] == int((ndc == "0").sum())
    # HADM_ID order is not chronological for every patient (as in MIMIC-III)
    multi = admissions.assign(T=admit, H=admissions["HADM_ID"].astype(int)).sort_values(["SUBJECT_ID", "T"])
    by_patient = multi.groupby("SUBJECT_ID")["H"].apply(lambda h: bool(np.all(np.diff(h.to_numpy()) > 0)))
    sizes = multi.groupby("SUBJECT_ID").size()
    assert not by_patient[sizes > 1].all()


def test_codes_are_skewed_real_strings_and_correlated(tables: tuple[Path, dict]) -> None:
    root, _ = tables
    from medtoolkit.resources import demo_path

    demo = pd.read_csv(Path(demo_path("mimic3")) / "DIAGNOSES_ICD.csv.gz", dtype=str)
    diagnoses = _read(root, "DIAGNOSES_ICD")
    assert set(diagnoses["ICD9_CODE"]) <= set(demo["ICD9_CODE"])
    frequency = diagnoses["ICD9_CODE"].value_counts()
    assert frequency.iloc[0] > 10 * frequency.median()  # Zipf-like head
    assert not diagnoses.duplicated(["HADM_ID", "ICD9_CODE"]).any()
    # drugs depend on diagnoses: the top diagnosis changes the drug mix of its admissions
    prescriptions = _read(root, "PRESCRIPTIONS")
    top = set(diagnoses.loc[diagnoses["ICD9_CODE"] == frequency.index[0], "HADM_ID"])
    inside = prescriptions.loc[prescriptions["HADM_ID"].isin(top), "NDC"].value_counts(normalize=True)
    outside = prescriptions.loc[~prescriptions["HADM_ID"].isin(top), "NDC"].value_counts(normalize=True)
    shift = (inside.reindex(outside.index.union(inside.index), fill_value=0)
             - outside.reindex(outside.index.union(inside.index), fill_value=0)).abs().sum() / 2
    assert shift > 0.1


def test_same_seed_same_bytes_and_gzip(tmp_path: Path) -> None:
    a = write_mimic3_tables(tmp_path / "a", 3000, seed=7)
    b = write_mimic3_tables(tmp_path / "b", 3000, seed=7, compress=True)
    c = write_mimic3_tables(tmp_path / "c", 3000, seed=8)
    for name in ("ADMISSIONS", "DIAGNOSES_ICD", "PROCEDURES_ICD", "PRESCRIPTIONS"):
        plain = Path(a["files"][name]).read_bytes()
        assert Path(b["files"][name]).name.endswith(".csv.gz")
        assert gzip.decompress(Path(b["files"][name]).read_bytes()) == plain
    assert Path(c["files"]["PRESCRIPTIONS"]).read_bytes() != Path(a["files"]["PRESCRIPTIONS"]).read_bytes()


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_prescriptions"):
        write_mimic3_tables(tmp_path, 0)
    with pytest.raises(ValueError, match="share"):
        write_mimic3_tables(tmp_path, 10, zero_ndc_share=0.6, unmapped_ndc_share=0.5)


def test_mimic3_loader_keeps_most_prescriptions(tables: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    from medtoolkit.data.loaders.mimic3 import MIMIC3Dataset

    original = medtoolkit.knowledge.build_drug_knowledge
    monkeypatch.setattr(medtoolkit.knowledge, "build_drug_knowledge",
                        functools.partial(original, with_substructures=False))
    root, counts = tables
    data = MIMIC3Dataset(MIMIC3Dataset.Params(root=root, cache=False, min_visits=1)).load(progress=False)
    report = data.provenance["report"]
    ndc = next(c for c in report["coverage"] if c["step"].startswith("ndc"))
    assert ndc["rows_mapped"] / ndc["rows_in"] > 0.9
    assert len(data.vocabularies["medications"]) > 50
    assert data.n_visits > 0.5 * counts["admissions"]
