"""``mimic4`` loader: demo counts against plain-pandas counts of the raw tables, ICD versions,
chronological order, drug-mapping coverage, errors, cache and one training epoch."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import medtoolkit
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.loaders.mimic4 import MIMIC4Dataset
from medtoolkit.data.tables import DataFormatError
from medtoolkit.resources import demo_path

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("MEDTOOLKIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def raw_hosp() -> Path:
    """The raw demo ``hosp/`` tables: the shared copy when present, else the shipped one."""
    shared = SHARED / "mimic4-demo" / "hosp"
    return shared if (shared / "admissions.csv.gz").exists() else Path(demo_path("mimic4"))


def read_raw(name: str) -> pd.DataFrame:
    return pd.read_csv(raw_hosp() / f"{name}.csv.gz", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def demo() -> EHRData:
    return MIMIC4Dataset(MIMIC4Dataset.Params(cache=False)).load(progress=False)


@pytest.fixture(scope="module")
def independent() -> dict[str, object]:
    """Counts of the raw demo computed with plain pandas (no medtoolkit code)."""
    admissions = read_raw("admissions")
    diagnoses = read_raw("diagnoses_icd")
    procedures = read_raw("procedures_icd")
    prescriptions = read_raw("prescriptions")
    complete = (
        set(admissions["hadm_id"]) & set(diagnoses["hadm_id"]) & set(procedures["hadm_id"])
        & set(prescriptions["hadm_id"])
    )
    kept = admissions[admissions["hadm_id"].isin(complete)]
    dx = diagnoses[diagnoses["hadm_id"].isin(complete)]
    px = procedures[procedures["hadm_id"].isin(complete)]
    return {
        "visits": len(kept),
        "patients": kept["subject_id"].nunique(),
        "diagnoses": set("ICD" + dx["icd_version"] + ":" + dx["icd_code"]),
        "procedures": set("ICD" + px["icd_version"] + ":" + px["icd_code"]),
        "admittime": kept.assign(t=pd.to_datetime(kept["admittime"])).groupby("subject_id")["t"].apply(sorted),
    }


# ---------------------------------------------------------------------------- counts
def test_demo_loads_offline_without_a_path(demo: EHRData) -> None:
    assert demo.name == "mimic4-demo"
    assert demo.provenance["demo"] is True
    assert set(demo.vocabularies) == {DIAGNOSES, PROCEDURES, MEDICATIONS}


def test_counts_equal_plain_pandas_counts(demo: EHRData, independent: dict[str, object]) -> None:
    # every admission of the demo with prescriptions keeps at least one mapped drug, so the
    # loader keeps exactly the admissions with rows in all three event tables
    assert demo.n_visits == independent["visits"] == 186
    assert demo.n_patients == independent["patients"] == 92
    assert set(demo.vocabularies[DIAGNOSES].idx2word) == independent["diagnoses"]
    assert set(demo.vocabularies[PROCEDURES].idx2word) == independent["procedures"]
    assert len(demo.vocabularies[DIAGNOSES]) == 1245 and len(demo.vocabularies[PROCEDURES]) == 352
    assert demo.provenance["counts"]["visits"] == 186


def test_medications_are_atc3_and_every_visit_has_some(demo: EHRData) -> None:
    codes = demo.vocabularies[MEDICATIONS].idx2word
    assert all(len(code) == 4 and code[0].isalpha() and code[1:3].isdigit() for code in codes)
    assert np.all(np.diff(demo.code_offsets[MEDICATIONS]) > 0)
    assert 100 <= len(codes) <= 200  # 134 with the shipped maps


def test_medication_vocabulary_is_covered_by_the_raw_maps(demo: EHRData) -> None:
    """Every ATC3 of the vocabulary is reachable from the demo's NDC, GSN or drug name (plain pandas)."""
    maps = Path(medtoolkit.__file__).parent / "resources" / "drug_knowledge"
    gsn_map = pd.read_csv(maps / "gsn_atc_ndc_mapping.csv.gz", dtype=str)
    name_map = pd.read_csv(maps / "mimic_drug_to_atc.csv.gz", dtype=str)
    rx = read_raw("prescriptions")
    gsns = set(rx["gsn"].str.split().explode().dropna().str.zfill(6))
    ndcs = set(rx["ndc"].str.zfill(11))
    names = set(rx["drug"].str.strip().str.casefold())
    reachable = (
        set(gsn_map.loc[gsn_map["gsn"].str.zfill(6).isin(gsns), "atc"].str[:4])
        | set(gsn_map.loc[gsn_map["ndc"].fillna("").str.zfill(11).isin(ndcs), "atc"].str[:4])
        | set(name_map.loc[name_map["drug"].str.strip().str.casefold().isin(names), "atc_code"].str[:4])
    )
    assert set(demo.vocabularies[MEDICATIONS].idx2word) <= reachable


# ---------------------------------------------------------------------------- codes and order
def test_icd9_and_icd10_are_kept_apart(demo: EHRData) -> None:
    for vocab in (DIAGNOSES, PROCEDURES):
        codes = demo.vocabularies[vocab].idx2word
        assert all(code.startswith(("ICD9:", "ICD10:")) for code in codes)
        assert any(code.startswith("ICD9:") for code in codes) and any(code.startswith("ICD10:") for code in codes)
    assert "ICD9:4019" in demo.vocabularies[DIAGNOSES]


def test_visits_are_ordered_by_admittime(demo: EHRData, independent: dict[str, object]) -> None:
    epoch = pd.Timestamp("1970-01-01")
    expected = independent["admittime"]
    for p, patient in enumerate(demo.patient_ids):
        times = demo.time[demo.visit_offsets[p]:demo.visit_offsets[p + 1]]
        assert np.all(np.diff(times) >= 0)
        want = [(t - epoch) / pd.Timedelta(days=1) for t in expected[patient]]
        np.testing.assert_allclose(times, want)
    assert (demo.visits_per_patient >= 2).sum() == sum(len(v) >= 2 for v in expected)


def test_coverage_of_every_mapping_step_is_in_the_report(demo: EHRData) -> None:
    report = demo.provenance["report"]
    steps = [c["step"] for c in report["coverage"]]
    assert any("NDC" in s for s in steps) and any("GSN" in s for s in steps) and any("name" in s for s in steps)
    ndc, gsn, name = report["coverage"][:3]
    assert gsn["rows_in"] == ndc["rows_in"] - ndc["rows_mapped"]  # each step sees what is left
    assert name["rows_in"] == gsn["rows_in"] - gsn["rows_mapped"]
    unmapped = [d for d in report["drops"] if "unmapped" in d["step"]]
    assert unmapped and unmapped[0]["count"] == name["rows_in"] - name["rows_mapped"]


# ---------------------------------------------------------------------------- a tiny hand-made directory
def _write(directory: Path, name: str, text: str) -> None:
    with gzip.open(directory / f"{name}.csv.gz", "wt", encoding="utf-8") as handle:
        handle.write(text)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Two patients; patient 1's admissions are out of order in the file and by hadm_id."""
    hosp = tmp_path / "mimic" / "hosp"
    hosp.mkdir(parents=True)
    _write(hosp, "admissions", "subject_id,hadm_id,admittime\n"
           "1,100,2150-05-01 10:00:00\n1,200,2150-01-01 10:00:00\n2,300,2160-01-01 00:00:00\n")
    _write(hosp, "diagnoses_icd", "subject_id,hadm_id,seq_num,icd_code,icd_version\n"
           "1,100,1,0010,9\n1,200,1,0010,10\n2,300,1,4019,9\n2,300,2,I10,10\n")
    _write(hosp, "procedures_icd", "subject_id,hadm_id,seq_num,chartdate,icd_code,icd_version\n"
           "1,100,1,2150-05-01,3961,9\n1,200,1,2150-01-01,3961,9\n2,300,1,2160-01-01,0DTJ4ZZ,10\n")
    _write(hosp, "prescriptions", "subject_id,hadm_id,starttime,drug,gsn,ndc\n"
           "1,100,2150-05-01 12:00:00,Acetaminophen,,0\n"
           "1,200,2150-01-03 12:00:00,Furosemide,,\n"
           "1,200,2150-01-01 12:00:00,Acetaminophen,,\n"
           "2,300,2160-01-01 01:00:00,Furosemide,,\n"
           "2,300,2160-01-01 02:00:00,No Such Drug,,\n")
    return hosp


def load(root: Path, **options: object) -> EHRData:
    return MIMIC4Dataset(MIMIC4Dataset.Params(root=root, cache=False, **options)).load(progress=False)


def test_same_code_in_icd9_and_icd10_gives_two_entries(tiny: Path) -> None:
    data = load(tiny)
    assert {"ICD9:0010", "ICD10:0010", "ICD9:4019", "ICD10:I10"} == set(data.vocabularies[DIAGNOSES].idx2word)
    assert "ICD10:0DTJ4ZZ" in data.vocabularies[PROCEDURES]


def test_order_follows_admittime_not_file_or_hadm_id(tiny: Path) -> None:
    data = load(tiny.parent)  # the parent of hosp/ works too
    assert data.patient_ids == ["1", "2"]
    first, second = data.patient_visits(0)
    diagnoses = data.vocabularies[DIAGNOSES]
    assert diagnoses.decode(data.visit_codes(DIAGNOSES, first)) == ["ICD10:0010"]  # hadm 200, January
    assert diagnoses.decode(data.visit_codes(DIAGNOSES, second)) == ["ICD9:0010"]  # hadm 100, May
    assert data.time[first] < data.time[second]


def test_unmapped_drugs_are_dropped_and_counted(tiny: Path) -> None:
    data = load(tiny)
    drops = {d["step"]: d for d in data.provenance["report"]["drops"]}
    assert drops["prescriptions.csv.gz: unmapped drugs"]["count"] == 1
    assert drops["prescriptions.csv.gz: unmapped drugs"]["examples"] == ["No Such Drug"]
    assert set(data.vocabularies[MEDICATIONS].idx2word) == {"N02B", "C03C"}


def test_first_day_medications(tiny: Path) -> None:
    data = load(tiny, first_day_medications=True)
    meds = data.vocabularies[MEDICATIONS]
    january = data.patient_visits(0)[0]
    assert meds.decode(data.visit_codes(MEDICATIONS, january)) == ["N02B"]  # furosemide started day 3
    drops = {d["step"]: d["count"] for d in data.provenance["report"]["drops"]}
    assert drops["prescriptions.csv.gz: first day"] == 1


def test_min_visits_is_applied(tiny: Path) -> None:
    data = load(tiny, min_visits=2)
    assert data.patient_ids == ["1"] and data.n_visits == 2


def test_atc_level_4(tiny: Path) -> None:
    data = load(tiny, atc_level=4)
    assert set(data.vocabularies[MEDICATIONS].idx2word) == {"N02BE", "C03CA"}


def test_bad_icd_version_names_file_line_and_column(tiny: Path) -> None:
    _write(tiny, "diagnoses_icd", "subject_id,hadm_id,seq_num,icd_code,icd_version\n1,100,1,0010,9\n1,200,1,0010,11\n")
    with pytest.raises(DataFormatError, match=r"diagnoses_icd\.csv\.gz: line 3, column icd_version"):
        load(tiny)


def test_bad_admittime_names_the_line(tiny: Path) -> None:
    _write(tiny, "admissions", "subject_id,hadm_id,admittime\n1,100,10/23/64 21:09\n")
    with pytest.raises(DataFormatError, match=r"admissions\.csv\.gz: line 2, column admittime"):
        load(tiny)


def test_missing_table_is_named(tiny: Path) -> None:
    (tiny / "procedures_icd.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="procedures_icd"):
        load(tiny)


def test_cache_round_trip(tiny: Path, tmp_path: Path) -> None:
    params = MIMIC4Dataset.Params(root=tiny, cache_dir=tmp_path / "cache")
    first = MIMIC4Dataset(params).load(progress=False)
    second = MIMIC4Dataset(params).load(progress=False)
    assert first.fingerprint() == second.fingerprint()
    assert second.provenance["report"] == first.provenance["report"]


# ---------------------------------------------------------------------------- training
def test_gamenet_trains_one_epoch_on_the_demo(one_torch_thread: None, tmp_path: Path) -> None:
    config = {
        "name": "mimic4-demo-smoke",
        "seed": 0,
        "device": "cpu",
        "dataset": {"type": "mimic4", "cache": False},
        "task": {"type": "medication_recommendation", "protocol": "random", "seeds": [0]},
        "model": {"type": "gamenet"},
        "losses": [{"type": "bce"}],
        "trainer": {"epochs": 1, "progress": "none"},
        "eval": {"bootstrap_rounds": 2},
    }
    result = medtoolkit.build(config).run(progress=False)
    assert list(result.models) == ["seed0"]
    jaccard = result.metrics["test"]["jaccard"]["mean"]
    assert 0.0 < jaccard <= 1.0


# ---------------------------------------------------------------------------- leading zeros lost
def _strip_zeros_with_dictionary(hosp: Path) -> None:
    """ICD-9 ``0010`` written as ``10``; an ICD-10 ``10`` must not match the ICD-9 dictionary code."""
    _write(hosp, "diagnoses_icd", "subject_id,hadm_id,seq_num,icd_code,icd_version\n"
           "1,100,1,10,9\n1,200,1,0010,10\n2,300,1,4019,9\n2,300,2,I10,10\n2,300,3,10,10\n")
    _write(hosp, "d_icd_diagnoses", "icd_code,icd_version,long_title\n0010,9,Cholera\n4019,9,HTN\nI10,10,HTN\n")
    _write(hosp, "d_icd_procedures", "icd_code,icd_version,long_title\n3961,9,Bypass\n0DTJ4ZZ,10,Appendectomy\n")


def test_stripped_icd9_codes_are_reported_and_kept(tiny: Path) -> None:
    _strip_zeros_with_dictionary(tiny)
    data = load(tiny)
    (finding,) = data.provenance["report"]["findings"]
    assert finding["step"] == "diagnoses_icd.csv.gz: icd_code leading zeros"
    assert (finding["rows"], finding["codes"], finding["action"]) == (1, 1, "kept")
    assert finding["examples"] == ["ICD9:10 -> ICD9:0010"]
    assert "absent from d_icd_diagnoses" in finding["message"]
    assert {"ICD9:10", "ICD10:10", "ICD10:0010"} <= set(data.vocabularies[DIAGNOSES].idx2word)


def test_stripped_icd9_codes_are_repaired_on_request(tiny: Path) -> None:
    _strip_zeros_with_dictionary(tiny)
    data = load(tiny, repair_icd_zeros=True)
    (finding,) = data.provenance["report"]["findings"]
    assert (finding["rows"], finding["codes"], finding["action"]) == (1, 1, "repaired")
    vocabulary = set(data.vocabularies[DIAGNOSES].idx2word)
    assert "ICD9:0010" in vocabulary and "ICD9:10" not in vocabulary and "ICD10:10" in vocabulary


def test_without_dictionaries_a_note_says_zeros_are_not_checked(tiny: Path) -> None:
    data = load(tiny)
    assert data.provenance["report"]["findings"] == []
    notes = " ".join(data.provenance["report"]["notes"])
    assert "diagnoses_icd.csv.gz: no d_icd_diagnoses table, so ICD codes that lost their leading zeros" in notes


def test_engines_give_the_same_demo_build(demo: EHRData) -> None:
    pandas_build = MIMIC4Dataset(MIMIC4Dataset.Params(cache=False, engine="pandas")).load(progress=False)
    assert demo.fingerprint() == pandas_build.fingerprint()  # the fixture uses the default engine (arrow)
    assert demo.provenance["report"] == pandas_build.provenance["report"]
    assert {k: v.idx2word for k, v in demo.vocabularies.items()} == {
        k: v.idx2word for k, v in pandas_build.vocabularies.items()}
