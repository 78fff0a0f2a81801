"""``eicu`` loader: demo counts against plain-pandas counts of the raw tables, ICD string splitting,
stay order, hospital index, cancelled orders, drug-mapping coverage and one training epoch."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import medtoolkit
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.config import ConfigValidationError, validate_config
from medtoolkit.data.loaders.eicu import EICUDataset, hicl_codes, split_icd_codes
from medtoolkit.data.tables import DataFormatError
from medtoolkit.plugins import PluginHost
from medtoolkit.presets import preset_config
from medtoolkit.resources import demo_path

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("MEDTOOLKIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def raw_dir() -> Path:
    """The raw eICU demo tables: the shared copy when present, else the shipped one."""
    shared = SHARED / "eicu-demo"
    return shared if (shared / "patient.csv.gz").exists() else Path(demo_path("eicu"))


def read_raw(name: str) -> pd.DataFrame:
    return pd.read_csv(raw_dir() / f"{name}.csv.gz", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def demo() -> EHRData:
    return EICUDataset(EICUDataset.Params(cache=False)).load(progress=False)


def _choose(keys: pd.Series, atc: pd.Series) -> pd.Series:
    """key -> ATC seen on most rows, ties to the smaller code."""
    counts = pd.DataFrame({"key": keys, "atc": atc}).dropna().value_counts().rename("n").reset_index()
    counts = counts.sort_values(["key", "n", "atc"], ascending=[True, False, True])
    best = counts.drop_duplicates("key")
    return pd.Series(best["atc"].to_numpy(), index=best["key"].to_numpy())


@pytest.fixture(scope="module")
def independent() -> dict[str, object]:
    """The demo processed with plain pandas from the raw tables (no medtoolkit code)."""
    patient = read_raw("patient")
    diagnosis = read_raw("diagnosis")
    treatment = read_raw("treatment")
    medication = read_raw("medication")
    maps = Path(medtoolkit.__file__).parent / "resources" / "drug_knowledge"
    name_map = pd.read_csv(maps / "mimic_drug_to_atc.csv.gz", dtype=str).dropna()
    lookup = _choose(name_map["drug"].str.strip().str.casefold(), name_map["atc_code"].str[:4])

    tokens = diagnosis.set_index("patientunitstayid")["icd9code"].str.split(",").explode().str.strip()
    tokens = tokens[tokens != ""]
    treatments = treatment.set_index("patientunitstayid")["treatmentstring"].str.strip()
    treatments = treatments[treatments != ""]

    med = medication.drop_duplicates(["patientunitstayid", "drugname", "drughiclseqno", "drugordercancelled"])
    cancelled = int((med["drugordercancelled"] == "Yes").sum())
    med = med[med["drugordercancelled"] != "Yes"]
    name = med["drugname"].str.strip()
    product = name.str.split(":").str[-1].str.replace(r"\s*\d.*$", "", regex=True).str.strip()
    word = product.str.extract(r"^([A-Za-z][A-Za-z\-]{3,})", expand=False).fillna("")
    atc = name.str.casefold().map(lookup)
    atc = atc.fillna(product.str.casefold().map(lookup)).fillna(word.str.casefold().map(lookup))
    hicl = med["drughiclseqno"].str.strip()
    by_hicl = _choose(hicl[atc.notna() & (hicl != "")], atc[atc.notna() & (hicl != "")])
    atc = atc.fillna(hicl.map(by_hicl))
    drugs = pd.Series(atc.to_numpy(), index=med["patientunitstayid"].to_numpy()).dropna()

    stays = set(tokens.index) & set(treatments.index) & set(drugs.index) & set(patient["patientunitstayid"])
    kept = patient[patient["patientunitstayid"].isin(stays)]
    return {
        "visits": len(kept),
        "patients": kept["uniquepid"].nunique(),
        "hospitals": kept["hospitalid"].nunique(),
        "stays_per_hospital": kept["hospitalid"].value_counts(),
        "diagnoses": tokens[tokens.index.isin(stays)].nunique(),
        "procedures": treatments[treatments.index.isin(stays)].nunique(),
        "medications": drugs[drugs.index.isin(stays)].nunique(),
        "cancelled": cancelled,
        "stays_with_all_three_tables": len(
            set(diagnosis["patientunitstayid"]) & set(treatment["patientunitstayid"])
            & set(medication["patientunitstayid"])
        ),
    }


# ---------------------------------------------------------------------------- counts
def test_demo_loads_offline_without_a_path(demo: EHRData) -> None:
    assert demo.name == "eicu-demo" and demo.provenance["demo"] is True
    assert demo.hospital is not None


def test_counts_equal_plain_pandas_counts(demo: EHRData, independent: dict[str, object]) -> None:
    assert independent["stays_with_all_three_tables"] == 1399  # as the data README says
    assert demo.n_visits == independent["visits"]
    assert demo.n_patients == independent["patients"]
    assert len(np.unique(demo.hospital)) == independent["hospitals"]
    assert len(demo.vocabularies[DIAGNOSES]) == independent["diagnoses"]
    assert len(demo.vocabularies[PROCEDURES]) == independent["procedures"]
    assert len(demo.vocabularies[MEDICATIONS]) == independent["medications"]


def test_hospital_index_is_zero_based_and_keeps_original_ids(demo: EHRData, independent: dict[str, object]) -> None:
    ids = demo.provenance["hospital_ids"]
    assert demo.hospital.min() == 0 and demo.hospital.max() == len(ids) - 1
    assert sorted(set(demo.hospital.tolist())) == list(range(len(ids)))
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    counts = np.bincount(demo.hospital)
    expected = independent["stays_per_hospital"]
    assert {ids[i]: int(counts[i]) for i in range(len(ids))} == {str(k): int(v) for k, v in expected.items()}


def test_cancelled_orders_are_dropped_and_counted(demo: EHRData, independent: dict[str, object]) -> None:
    drops = {d["step"]: d["count"] for d in demo.provenance["report"]["drops"]}
    assert drops["medication.csv.gz: cancelled"] == independent["cancelled"]


def test_coverage_of_every_mapping_step_is_in_the_report(demo: EHRData) -> None:
    coverage = demo.provenance["report"]["coverage"]
    steps = [c["step"] for c in coverage]
    assert any("drugname (exact)" in s for s in steps) and any("HICL" in s for s in steps)
    for before, after in zip(coverage[:3], coverage[1:4]):  # each step is offered what is left
        assert after["rows_in"] == before["rows_in"] - before["rows_mapped"]
    total = coverage[-1]
    assert total["rows_mapped"] == sum(c["rows_mapped"] for c in coverage[:4])


def test_diagnosis_codes_keep_icd9_and_icd10_apart(demo: EHRData) -> None:
    codes = demo.vocabularies[DIAGNOSES]
    assert all(code.startswith(("ICD9:", "ICD10:")) for code in codes.idx2word)
    assert "ICD9:401.9" in codes and "ICD10:I10" in codes
    assert not any("," in code for code in codes.idx2word)


# ---------------------------------------------------------------------------- ICD strings
def test_split_icd_codes() -> None:
    values = pd.Series(["401.9, I10", "V08, Z21", " 31.1 ", "486, 486, J18.9", "E980.2, 965.00, T40.60", "x1, ,"],
                       index=[10, 11, 12, 13, 14, 15])
    split = split_icd_codes(values)
    got = (split["REVISION"] + ":" + split["TOKEN"]).groupby(level=0).agg(list).to_dict()
    assert got == {
        10: ["ICD9:401.9", "ICD10:I10"],
        11: ["ICD9:V08", "ICD10:Z21"],  # V08 fits both shapes: before the ICD-10 code = ICD-9
        12: ["ICD9:31.1"],
        13: ["ICD9:486", "ICD9:486", "ICD10:J18.9"],
        14: ["ICD9:E980.2", "ICD9:965.00", "ICD10:T40.60"],
        15: [":x1"],  # neither shape: the loader drops and counts it
    }


# ---------------------------------------------------------------------------- a tiny hand-made directory
def _write(directory: Path, name: str, text: str) -> None:
    with gzip.open(directory / f"{name}.csv.gz", "wt", encoding="utf-8") as handle:
        handle.write(text)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Patient A: hospital stay 20 (2014; unit stay 3), hospital stay 10 (2015; unit stay 1 is
    the *second* unit stay: admitted 2258 min after hospital admission, stay 2 after 8 min).
    Patient B: one stay at another hospital."""
    _write(tmp_path, "patient",
           "patientunitstayid,patienthealthsystemstayid,uniquepid,hospitalid,hospitaladmitoffset,"
           "unitvisitnumber,hospitaldischargeyear\n"
           "1,10,A,59,-2258,2,2015\n2,10,A,59,-8,1,2015\n3,20,A,60,0,1,2014\n4,30,B,73,-5,1,2015\n")
    _write(tmp_path, "diagnosis", "diagnosisid,patientunitstayid,icd9code\n"
           '1,1,"401.9, I10"\n2,2,"V08, Z21"\n3,3,31.1\n4,4,"486, 486, J18.9"\n5,4,\n6,4,foo\n7,99,428.0\n')
    _write(tmp_path, "treatment", "patientunitstayid,treatmentstring\n1,a|b\n2,a|c\n3,a|b\n4,d\n")
    _write(tmp_path, "medication", "patientunitstayid,drugordercancelled,drugname,drughiclseqno\n"
           "1,No,WARFARIN SODIUM 5 MG PO TABS,2812\n2,No,,2812\n3,No,Acetaminophen,1\n"
           "4,No,Furosemide,2\n4,Yes,Acetaminophen,1\n4,No,,777\n")
    return tmp_path


def load(root: Path, **options: object) -> EHRData:
    return EICUDataset(EICUDataset.Params(root=root, cache=False, **options)).load(progress=False)


def test_stays_are_ordered_chronologically(tiny: Path) -> None:
    data = load(tiny)
    assert data.patient_ids == ["A", "B"]
    diagnoses = data.vocabularies[DIAGNOSES]
    order = [diagnoses.decode(data.visit_codes(DIAGNOSES, v)) for v in data.patient_visits(0)]
    # 2014 first; then, inside hospital stay 10, the unit stay admitted 8 min after hospital admission
    assert order == [["ICD9:31.1"], ["ICD9:V08", "ICD10:Z21"], ["ICD9:401.9", "ICD10:I10"]]
    assert data.time.tolist() == [0.0, 1.0, 2.0, 0.0]


def test_tiny_codes_hospitals_and_drops(tiny: Path) -> None:
    data = load(tiny)
    assert data.provenance["hospital_ids"] == ["59", "60", "73"]
    assert data.hospital.tolist() == [1, 0, 0, 2]
    meds = data.vocabularies[MEDICATIONS]
    assert [meds.decode(data.visit_codes(MEDICATIONS, v)) for v in range(4)] == [["N02B"], ["B01A"], ["B01A"], ["C03C"]]
    drops = {d["step"]: d for d in data.provenance["report"]["drops"]}
    assert drops["medication.csv.gz: cancelled"]["count"] == 1
    assert drops["medication.csv.gz: unmapped drugs"]["examples"] == ["hicl 777"]
    assert drops["diagnosis.csv.gz: icd9code tokens"]["examples"] == ["foo"]
    assert drops["diagnosis.csv.gz: icd9code"]["count"] == 1
    assert drops["diagnosis.csv.gz: stay"]["count"] == 1
    assert data.vocabularies[PROCEDURES].idx2word == ["a|b", "a|c", "d"]


def test_min_stays_per_hospital(tiny: Path) -> None:
    data = load(tiny, min_stays_per_hospital=2)
    assert data.provenance["hospital_ids"] == ["59"]
    assert data.n_visits == 2 and data.hospital.tolist() == [0, 0]
    drops = {d["step"]: d for d in data.provenance["report"]["drops"]}
    assert drops["hospitals: min_stays_per_hospital"]["count"] == 2


def test_min_stays_per_hospital_on_the_demo(demo: EHRData) -> None:
    data = EICUDataset(EICUDataset.Params(cache=False, min_stays_per_hospital=10)).load(progress=False)
    counts = np.bincount(data.hospital)
    assert counts.min() >= 10
    assert data.n_visits < demo.n_visits


def test_missing_column_is_named(tiny: Path) -> None:
    _write(tiny, "patient", "patientunitstayid,uniquepid\n1,A\n")
    with pytest.raises(DataFormatError, match="PATIENTHEALTHSYSTEMSTAYID"):
        load(tiny)


def test_missing_table_is_named(tiny: Path) -> None:
    (tiny / "treatment.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="treatment"):
        load(tiny)


# ---------------------------------------------------------------------------- top-N filters
def _drops(data: EHRData) -> dict[str, dict]:
    return {d["step"]: d for d in data.provenance["report"]["drops"]}


def test_top_medications_keeps_exactly_n_ties_by_code(tiny: Path) -> None:
    # stays held by each class: B01A 2 (stays 1, 2), C03C 1 (stay 4), N02B 1 (stay 3):
    # the top 2 are B01A and, of the tie, the smaller code C03C; stay 3 loses its only drug
    data = load(tiny, top_medications=2)
    assert data.vocabularies[MEDICATIONS].idx2word == ["B01A", "C03C"]
    assert data.n_visits == 3 and data.patient_ids == ["A", "B"]
    drops = _drops(data)
    assert drops["medications: top-2 filter"]["count"] == 1
    assert "1 visits lost every medications code" in drops["medications: top-2 filter"]["reason"]
    assert drops["visits: no medications"]["count"] == 1


def test_top_procedures_keeps_exactly_n_ties_by_code(tiny: Path) -> None:
    # a|b: 2 stays, a|c: 1, d: 1 -> top 2 = a|b and a|c (tie broken by code); stay 4 (B) goes
    data = load(tiny, top_procedures=2)
    assert data.vocabularies[PROCEDURES].idx2word == ["a|b", "a|c"]
    assert data.patient_ids == ["A"] and data.n_visits == 3
    drops = _drops(data)
    assert drops["procedures: top-2 filter"]["count"] == 1
    assert drops["visits: no procedures"]["count"] == 1
    assert drops["patients: no complete visit"]["count"] == 1
    assert data.provenance["options"]["top_procedures"] == 2


# ---------------------------------------------------------------------------- HICL drug codes
def test_hicl_codes() -> None:
    values = pd.Series([" 02812.0 ", "0", "2812", "", "12a", "1.5", None])
    got = hicl_codes(values)
    assert got.iloc[:3].tolist() == ["HICL:2812", "HICL:0", "HICL:2812"]
    assert got.iloc[3:].isna().all()


def test_hicl_drug_codes_on_the_tiny_tables(tiny: Path) -> None:
    _write(tiny, "medication", "patientunitstayid,drugordercancelled,drugname,drughiclseqno\n"
           "1,No,WARFARIN SODIUM 5 MG PO TABS,2812\n2,No,,02812.0\n3,No,Acetaminophen,1\n"
           "4,No,Furosemide,2\n4,Yes,Acetaminophen,1\n4,No,,777\n3,No,Heparin,\n2,No,odd,12a\n")
    data = load(tiny, drug_code="hicl")
    meds = data.vocabularies[MEDICATIONS]
    assert meds.idx2word == ["HICL:1", "HICL:2", "HICL:2812", "HICL:777"]  # code text order
    # visit order: A's stays 3, 2, 1, then B's stay 4
    assert [meds.decode(data.visit_codes(MEDICATIONS, v)) for v in range(4)] == [
        ["HICL:1"], ["HICL:2812"], ["HICL:2812"], ["HICL:2", "HICL:777"]]
    drops = _drops(data)
    assert drops["medication.csv.gz: cancelled"]["count"] == 1
    assert drops["medication.csv.gz: no drughiclseqno"]["count"] == 1
    assert drops["medication.csv.gz: no drughiclseqno"]["examples"] == ["Heparin"]
    assert drops["medication.csv.gz: drughiclseqno"]["examples"] == ["12a"]
    assert not data.knowledge.has_ddi and data.knowledge.smiles is None
    assert data.provenance["code_format"][MEDICATIONS] == "HICL:<drughiclseqno>"
    coverage = {c["step"]: c for c in data.provenance["report"]["coverage"]}
    assert coverage["medication: drughiclseqno -> HICL code"]["rows_mapped"] == 5


def test_hicl_declares_no_drug_knowledge_and_validate_refuses_ddi_parts() -> None:
    host = PluginHost(load_entry_points=False)
    eicu = host.get("dataset", "eicu")
    assert eicu.knowledge_provided(eicu.Params(drug_code="hicl")) == frozenset()
    raw = preset_config("gamenet", host=host)
    raw["dataset"] = {"type": "eicu", "drug_code": "hicl"}
    with pytest.raises(ConfigValidationError) as caught:
        validate_config(raw, host)
    errors = {error.path: error.message for error in caught.value.errors}
    assert errors == {
        "model.memory": "memory 'gcn' needs a DDI matrix, but dataset 'eicu' as configured has none",
        "losses.2": "loss 'ddi' needs a DDI matrix, but dataset 'eicu' as configured has none",
    }
    raw["model"]["memory"]["ddi_in_memory"] = False
    raw["losses"] = raw["losses"][:2]
    validate_config(raw, host)


def test_new_options_are_in_the_cache_key(tiny: Path, tmp_path: Path) -> None:
    def cached(**options: object) -> EHRData:
        params = EICUDataset.Params(root=tiny, cache=True, cache_dir=tmp_path / "cache", **options)
        return EICUDataset(params).load(progress=False)

    atc, hicl = cached(), cached(drug_code="hicl")
    assert atc.vocabularies[MEDICATIONS].idx2word != hicl.vocabularies[MEDICATIONS].idx2word
    assert len(cached(top_medications=2).vocabularies[MEDICATIONS]) == 2
    assert len(cached(top_procedures=1).vocabularies[PROCEDURES]) == 1
    again = cached(drug_code="hicl")
    assert again.fingerprint() == hicl.fingerprint() and not again.knowledge.has_ddi


# ---------------------------------------------------------------------------- the demo, TEMPT's way
def test_demo_with_hicl_codes_counts_like_plain_pandas() -> None:
    data = EICUDataset(EICUDataset.Params(cache=False, drug_code="hicl")).load(progress=False)
    diagnosis, treatment = read_raw("diagnosis"), read_raw("treatment")
    medication, patient = read_raw("medication"), read_raw("patient")
    tokens = diagnosis.set_index("patientunitstayid")["icd9code"].str.split(",").explode().str.strip()
    treatments = treatment.set_index("patientunitstayid")["treatmentstring"].str.strip()
    medication = medication[(medication["drugordercancelled"] != "Yes")]
    hicl = medication.set_index("patientunitstayid")["drughiclseqno"].str.strip()
    hicl = hicl[hicl != ""]
    stays = set(tokens[tokens != ""].index) & set(treatments[treatments != ""].index) & set(hicl.index)
    kept = patient[patient["patientunitstayid"].isin(stays)]
    assert data.n_visits == len(kept)
    assert len(np.unique(data.hospital)) == kept["hospitalid"].nunique()
    assert len(data.vocabularies[MEDICATIONS]) == hicl[hicl.index.isin(stays)].astype(float).nunique()
    assert not data.knowledge.has_ddi


def test_demo_with_tempt_options() -> None:
    options = {"drug_code": "hicl", "top_medications": 50, "top_procedures": 100}
    data = EICUDataset(EICUDataset.Params(cache=False, min_stays_per_hospital=10, **options)).load(progress=False)
    assert len(data.vocabularies[MEDICATIONS]) <= 50 and len(data.vocabularies[PROCEDURES]) <= 100
    counts = np.bincount(data.hospital)
    assert counts.min() >= 10 and len(counts) == len(data.provenance["hospital_ids"])
    summary = data.provenance["hospital_jsd"]
    assert summary["n_hospitals"] == len(counts) and summary["skipped_hospitals"] == 0
    assert 0 < summary["min"] <= summary["mean"] <= summary["max"] <= 1
    # the demo's hospitals keep at most 15 stays with these options: 20 leaves none
    with pytest.raises(ValueError, match="min_stays_per_hospital=20 removes every hospital: the largest has 15"):
        EICUDataset(EICUDataset.Params(cache=False, min_stays_per_hospital=20, **options)).load(progress=False)


def test_demo_reports_the_hospital_divergence(demo: EHRData) -> None:
    summary = demo.provenance["hospital_jsd"]
    assert summary["n_hospitals"] == len(demo.provenance["hospital_ids"])
    assert summary["n_pairs"] == summary["n_hospitals"] * (summary["n_hospitals"] - 1) // 2
    assert 0 <= summary["min"] <= summary["median"] <= summary["max"] <= 1


# ---------------------------------------------------------------------------- training
def test_gamenet_trains_one_epoch_on_the_demo(one_torch_thread: None) -> None:
    config = {
        "name": "eicu-demo-smoke",
        "seed": 0,
        "device": "cpu",
        "dataset": {"type": "eicu", "cache": False},
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


def test_engines_give_the_same_demo_build(demo: EHRData) -> None:
    pandas_build = EICUDataset(EICUDataset.Params(cache=False, engine="pandas")).load(progress=False)
    assert demo.fingerprint() == pandas_build.fingerprint()  # the fixture uses the default engine (arrow)
    assert demo.provenance["report"] == pandas_build.provenance["report"]
    assert {k: v.idx2word for k, v in demo.vocabularies.items()} == {
        k: v.idx2word for k, v in pandas_build.vocabularies.items()}
