"""``mimic3`` loader on the built-in MIMIC-III demo: counts against plain-pandas counts of the
raw tables, chronological order, SafeDrug options, bad input, cache and one GAMENet epoch."""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import medtoolkit
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.loaders.mimic3 import MIMIC3Dataset
from medtoolkit.data.tables import DataFormatError
from medtoolkit.resources import demo_path

REPO_ROOT = Path(__file__).resolve().parents[3]
DRUG_MAPS = REPO_ROOT.parent / "shared" / "data" / "drug-knowledge"


def load(tmp: Path, **options: object) -> EHRData:
    """Load the demo (or a copy); BRICS substructures are skipped unless asked for (rdkit is slow)."""
    options.setdefault("substructures", False)
    return MIMIC3Dataset(MIMIC3Dataset.Params(cache_dir=tmp, **options)).load(progress=False)


def raw(name: str) -> pd.DataFrame:
    return pd.read_csv(demo_path("mimic3") / f"{name}.csv.gz", dtype=str, keep_default_na=False)


def independent_counts(min_visits: int) -> dict[str, float]:
    """The demo's counts computed with plain pandas (the drug map is used as a black box)."""
    from medtoolkit.knowledge import DrugMapper

    presc = raw("PRESCRIPTIONS")
    ndc = presc["NDC"].str.strip()
    presc = presc[(ndc != "") & ~ndc.str.fullmatch("0+")].copy()
    assert presc["NDC"].str.fullmatch(r"\d{11}").all()  # the demo has no malformed NDC
    mapper = DrugMapper()
    atc = mapper.map_ndc(presc["NDC"], atc_level=3).astype(object)
    for column, method in (("GSN", mapper.map_gsn), ("DRUG", mapper.map_name)):
        missing = atc.isna()
        atc[missing] = method(presc.loc[missing, column], atc_level=3).astype(object).to_numpy()
    presc["CODE"] = atc
    tables = {
        MEDICATIONS: presc[presc["CODE"].notna()],
        DIAGNOSES: raw("DIAGNOSES_ICD").rename(columns={"ICD9_CODE": "CODE"}),
        PROCEDURES: raw("PROCEDURES_ICD").rename(columns={"ICD9_CODE": "CODE"}),
    }
    admissions = set(raw("ADMISSIONS")["HADM_ID"])
    pairs = {}
    for vocab, table in tables.items():
        table = table[(table["CODE"] != "") & table["HADM_ID"].isin(admissions)]
        pairs[vocab] = table[["SUBJECT_ID", "HADM_ID", "CODE"]].drop_duplicates()
    assert pairs[DIAGNOSES]["CODE"].nunique() < 2000  # top-2000 is a no-op on the demo
    complete = set.intersection(*(set(p["HADM_ID"]) for p in pairs.values()))
    visits = pairs[MEDICATIONS][pairs[MEDICATIONS]["HADM_ID"].isin(complete)][["SUBJECT_ID", "HADM_ID"]]
    visits = visits.drop_duplicates()
    per_patient = visits.groupby("SUBJECT_ID").size()
    kept = set(visits[visits["SUBJECT_ID"].isin(per_patient[per_patient >= min_visits].index)]["HADM_ID"])
    counts: dict[str, float] = {"patients": int((per_patient >= min_visits).sum()), "visits": len(kept)}
    for vocab, table in pairs.items():
        table = table[table["HADM_ID"].isin(kept)]
        counts[f"vocab_{vocab}"] = table["CODE"].nunique()
        counts[f"per_visit_{vocab}"] = len(table) / len(kept)
    return counts


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mimic3-cache")


@pytest.fixture(scope="module")
def demo(cache_root: Path) -> EHRData:
    return load(cache_root, min_visits=1, substructures=True)


def test_demo_loads_offline_without_a_path(demo: EHRData) -> None:
    assert demo.name == "mimic3-demo" and demo.provenance["builtin_demo"] is True
    assert Path(demo.provenance["directory"]) == demo_path("mimic3")
    assert (demo_path("mimic3").parent / "ATTRIBUTION.md").is_file()
    assert (demo_path("mimic3") / "LICENSE.txt").is_file()
    mask = demo.knowledge.substructure_mask
    assert mask is not None and mask.shape[0] == demo.n_drugs and demo.knowledge.smiles is not None


@pytest.mark.parametrize("min_visits", [1, 2])
def test_counts_equal_plain_pandas_counts(cache_root: Path, min_visits: int) -> None:
    data = load(cache_root, min_visits=min_visits)
    stats = data.statistics()
    expected = independent_counts(min_visits)
    for key, value in expected.items():
        assert stats[key] == pytest.approx(value), key
    documented = {1: (82, 107, 523, 157, 134), 2: (11, 36, 227, 57, 108)}[min_visits]  # docs/data.rst
    assert (stats["patients"], stats["visits"], stats["vocab_diagnoses"], stats["vocab_procedures"],
            stats["vocab_medications"]) == documented


def test_visits_are_chronological_not_hadm_order(demo: EHRData) -> None:
    presc = raw("PRESCRIPTIONS")
    start = pd.to_datetime(presc["STARTDATE"]).groupby(presc["HADM_ID"]).min()
    reordered = 0
    for p in range(demo.n_patients):
        visits = demo.patient_visits(p)
        times = demo.time[visits.start:visits.stop]
        assert np.all(np.diff(times) >= 0)
        assert not np.isnan(times).any()
    # the loader's times are the earliest STARTDATE (ADMITTIME is damaged in the demo)
    subjects = raw("ADMISSIONS").set_index("HADM_ID")["SUBJECT_ID"]
    ordered = start[start.index.isin(subjects.index)].sort_values()
    for subject, hadms in ordered.groupby(subjects.reindex(ordered.index)):
        hadm_order = sorted(hadms.index, key=int)
        reordered += list(hadms.index) != hadm_order
    assert reordered > 0  # HADM_ID order would be wrong for some patients
    notes = " ".join(demo.provenance["report"]["notes"])
    assert "129 of 129 ADMITTIME values are damaged" in notes


def test_coverage_and_drops_are_reported(demo: EHRData) -> None:
    report = demo.provenance["report"]
    steps = [c["step"] for c in report["coverage"]]
    assert steps[0] == "ndc->atc3 (shipped)" and any("by GSN" in s for s in steps)
    drops = {d["step"]: d["count"] for d in report["drops"]}
    assert drops["prescriptions: NDC blank or 0"] > 0 and drops["medications: repeated within visit"] > 0


def test_safedrug_options_train_one_gamenet_epoch(cache_root: Path, tmp_path: Path) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        experiment = medtoolkit.build("gamenet", [
            "dataset.atc_level=3", "dataset.top_diagnoses=2000", "dataset.min_visits=2", "dataset.substructures=false",
            f"dataset.cache_dir={cache_root}", "trainer.epochs=1", "eval.bootstrap_rounds=2", "device=cpu",
        ])
        result = experiment.run(out_dir=tmp_path, progress=False)
    finally:
        torch.set_num_threads(previous)
    assert result.metrics["data"]["patients"] == 11 and len(result.metrics["epoch_seconds"]) == 1


def test_rxnorm_route_and_atc4(cache_root: Path) -> None:
    level4 = load(cache_root, atc_level=4, min_visits=1)
    assert all(len(code) == 5 for code in level4.vocabularies[MEDICATIONS].idx2word)
    if not (DRUG_MAPS / "ndc2atc_level4.zip").exists():
        pytest.skip("SafeDrug's NDC maps are not available")
    data = load(cache_root, drug_map="rxnorm", drug_map_dir=DRUG_MAPS, min_visits=1)
    coverage = data.provenance["report"]["coverage"]
    assert [c["step"] for c in coverage] == ["ndc->atc3 (rxnorm)"]
    assert 0.5 < coverage[0]["rows_mapped"] / coverage[0]["rows_in"] < 1


# ---------------------------------------------------------------------------- edited copies
@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "mimic3"
    shutil.copytree(demo_path("mimic3"), target)
    return target


def rewrite(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write("".join(edit(lines)))


def test_cache_hit_and_rebuilds(copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load(cache, root=copy, min_visits=1)
    assert first.provenance["cache"]["hit"] is False
    started = time.perf_counter()
    second = load(cache, root=copy, min_visits=1)
    assert time.perf_counter() - started < 5
    assert second.provenance["cache"]["hit"] is True and second.fingerprint() == first.fingerprint()
    assert load(cache, root=copy, min_visits=2).provenance["cache"]["hit"] is False  # changed option
    rewrite(copy / "PROCEDURES_ICD.csv.gz", lambda lines: lines[:-1])  # changed input
    changed = load(cache, root=copy, min_visits=1)
    assert changed.provenance["cache"]["hit"] is False
    entry = Path(changed.provenance["cache"]["path"])
    (entry / "meta.json").write_text("{}")
    with pytest.warns(RuntimeWarning, match="corrupt"):
        rebuilt = load(cache, root=copy, min_visits=1)
    assert rebuilt.provenance["cache"]["hit"] is False and rebuilt.fingerprint() == changed.fingerprint()


def test_the_name_follows_the_directory_even_on_a_cache_hit(copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"  # root is not in the cache key: the demo and its copy share an entry
    assert load(cache, min_visits=1).name == "mimic3-demo"
    from_copy = load(cache, root=copy, min_visits=1)
    assert from_copy.provenance["cache"]["hit"] is True and from_copy.name == "mimic3:mimic3"
    assert load(cache, min_visits=1).name == "mimic3-demo"


def test_first_day_medications(cache_root: Path, demo: EHRData) -> None:
    first_day = load(cache_root, min_visits=1, first_day_medications=True)
    stats, base = first_day.statistics(), demo.statistics()
    assert stats["per_visit_medications"] < base["per_visit_medications"]
    drops = {d["step"]: d["count"] for d in first_day.provenance["report"]["drops"]}
    assert drops["prescriptions: first-day filter"] > 0


def test_malformed_ndc_is_counted(copy: Path, tmp_path: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        lines[1] = lines[1].replace("00006494300", "12-AB")
        return lines

    rewrite(copy / "PRESCRIPTIONS.csv.gz", edit)
    data = load(tmp_path, root=copy, cache=False)
    drops = {d["step"]: d for d in data.provenance["report"]["drops"]}
    assert drops["prescriptions: NDC malformed"].get("count") == 1
    assert drops["prescriptions: NDC malformed"]["examples"] == ["line 2: '12-AB'"]


def test_undatable_admission_is_an_error(copy: Path, tmp_path: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        return [line.replace(",2146-07-21 00:00:00,", ",,") if ",42458,159647," in line else line for line in lines]

    rewrite(copy / "PRESCRIPTIONS.csv.gz", edit)
    with pytest.raises(DataFormatError, match=r"ADMISSIONS.csv.gz: line \d+, column ADMITTIME: .* admission 159647 "
                                              r"has no valid STARTDATE"):
        load(tmp_path, root=copy, cache=False)


def test_valid_admittime_wins(copy: Path, tmp_path: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        return [lines[0]] + [line.replace("10/23/64 21:09", "2164-10-23 21:09:00") for line in lines[1:]]

    rewrite(copy / "ADMISSIONS.csv.gz", edit)
    data = load(tmp_path, root=copy, cache=False, min_visits=1)
    assert "128 of 129 ADMITTIME values are damaged" in " ".join(data.provenance["report"]["notes"])


def test_missing_table_and_column(copy: Path, tmp_path: Path) -> None:
    rewrite(copy / "DIAGNOSES_ICD.csv.gz", lambda lines: [lines[0].replace("ICD9_CODE", "ICD_CODE"), *lines[1:]])
    with pytest.raises(DataFormatError, match="DIAGNOSES_ICD.csv.gz: required column 'ICD9_CODE' is missing"):
        load(tmp_path, root=copy, cache=False)
    (copy / "DIAGNOSES_ICD.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="table 'DIAGNOSES_ICD' not found"):
        load(tmp_path, root=copy, cache=False)


def test_cli_data_info(cache_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medtoolkit.cli import main

    assert main(["data", "info", "mimic3", "-o", "min_visits=1", "-o", f"cache_dir={cache_root}",
                 "-o", "substructures=false"]) == 0
    out = capsys.readouterr().out
    assert "patients: 82\nvisits: 107  (1.30 per patient, max 14)" in out
    assert "medications: vocabulary 134" in out and "ground-truth DDI rate: " in out
    assert "| ndc->atc3 (shipped) |" in out and "prescriptions: NDC blank or 0" in out
    assert main(["data", "info", "gamenet", "-o", f"cache_dir={cache_root}", "-o", "substructures=false",
                 "--json"]) == 0
    import json

    payload = json.loads(capsys.readouterr().out)
    assert payload["statistics"]["patients"] == 82 and payload["cache"]["hit"] is True
    assert main(["data", "info", "mimic3", "-o", "atc_level=7"]) == 1
    assert "error: dataset 'mimic3': invalid Params: atc_level: " in capsys.readouterr().err


def _same_build(first: EHRData, second: EHRData) -> None:
    assert first.fingerprint() == second.fingerprint()
    words = [{k: v.idx2word for k, v in data.vocabularies.items()} for data in (first, second)]
    assert words[0] == words[1]
    assert first.provenance["report"] == second.provenance["report"]
    assert first.patient_ids == second.patient_ids
    np.testing.assert_array_equal(first.time, second.time)


@pytest.mark.parametrize("options", [{}, {"first_day_medications": True, "min_visits": 2, "atc_level": 4}])
def test_engines_give_the_same_demo_build(tmp_path: Path, options: dict[str, object]) -> None:
    pandas_build = load(tmp_path / "p", engine="pandas", cache=False, **options)
    arrow_build = load(tmp_path / "a", engine="arrow", cache=False, **options)
    _same_build(pandas_build, arrow_build)


def test_engines_give_the_same_generated_build(tmp_path: Path) -> None:
    from medtoolkit.data.raw_generator import write_mimic3_tables

    root = tmp_path / "tables"
    write_mimic3_tables(root, 30_000, seed=3, zero_ndc_share=0.05, unmapped_ndc_share=0.1)
    builds = {
        engine: MIMIC3Dataset(MIMIC3Dataset.Params(root=root, cache=False, substructures=False, engine=engine,
                                                   top_diagnoses=50)).load(progress=False)
        for engine in ("pandas", "arrow")
    }
    _same_build(builds["pandas"], builds["arrow"])
    steps = {d["step"] for d in builds["arrow"].provenance["report"]["drops"]}
    assert "prescriptions: NDC blank or 0" in steps and "read: duplicate rows" in steps


def test_engine_is_not_part_of_the_cache_key(tmp_path: Path) -> None:
    first = load(tmp_path, engine="pandas")
    second = load(tmp_path, engine="arrow")
    assert second.provenance["cache"]["hit"] and second.fingerprint() == first.fingerprint()


def test_cache_mmap_switch_reads_the_same_data_mapped_or_in_memory(tmp_path: Path) -> None:
    params = {"cache_dir": tmp_path, "substructures": False}
    built = MIMIC3Dataset(MIMIC3Dataset.Params(**params)).load(progress=False)
    mapped = MIMIC3Dataset(MIMIC3Dataset.Params(**params)).load(progress=False)
    in_memory = MIMIC3Dataset(MIMIC3Dataset.Params(**params, cache_mmap=False)).load(progress=False)
    assert isinstance(mapped.codes["diagnoses"], np.memmap)
    assert not isinstance(in_memory.codes["diagnoses"], np.memmap)
    assert built.fingerprint() == mapped.fingerprint() == in_memory.fingerprint()
