"""assemble_ehr: every step counted, chronological order, sorted vocabularies, speed."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from medtoolkit.data.assemble import assemble_ehr
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.report import DataReport


def frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["PATIENT", "VISIT", "CODE"])


def knowledge(codes: list[str]) -> DrugKnowledge:
    return DrugKnowledge.empty(len(codes))


def small() -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    visits = pd.DataFrame({
        "PATIENT": ["10", "10", "10", "9", "9", "11"],
        "VISIT": ["300", "100", "200", "50", "60", "70"],
        "TIME": [3.0, 5.0, 1.0, 2.0, 1.0, 1.0],
    })
    diagnoses = frame([("10", "300", "d2"), ("10", "300", "d1"), ("10", "300", "d2"), ("10", "100", "d1"),
                       ("10", "200", "d3"), ("9", "50", "d1"), ("9", "60", "d1"), ("11", "70", "d1"),
                       ("10", "999", "d1"), ("9", "50", "")])
    procedures = frame([("10", "300", "p1"), ("10", "100", "p1"), ("10", "200", "p2"), ("9", "50", "p1"),
                        ("9", "60", "p1"), ("11", "70", "p1")])
    medications = frame([("10", "300", "m2"), ("10", "300", "m1"), ("10", "100", "m1"), ("10", "200", "m1"),
                         ("9", "50", "m1"), ("11", "70", "m1")])  # visit 9/60 has none
    return {"diagnoses": diagnoses, "procedures": procedures, "medications": medications}, visits


def test_order_vocab_and_counts() -> None:
    events, visits = small()
    report = DataReport()
    data = assemble_ehr(events, visits, knowledge, name="t", report=report, min_visits=1)
    assert data.patient_ids == ["9", "10", "11"]  # numeric id order
    assert data.time.tolist() == [2.0, 1.0, 3.0, 5.0, 1.0]  # chronological within patient
    assert data.vocabularies["diagnoses"].idx2word == ["d1", "d2", "d3"]
    # patient 10: visit 200 (t=1) then 300 (t=3) then 100 (t=5); visit 300 keeps d2, d1 (first-seen order)
    assert [data.vocabularies["diagnoses"].decode(data.visit_codes("diagnoses", i)) for i in range(1, 4)] == [
        ["d3"], ["d2", "d1"], ["d1"]]
    assert data.vocabularies["medications"].decode(data.visit_codes("medications", 2)) == ["m2", "m1"]
    steps = {d.step: d.count for d in report.drops}
    assert steps == {"diagnoses: blank code": 1, "diagnoses: unknown visit": 1,
                     "diagnoses: repeated within visit": 1, "visits: no medications": 1}
    assert data.provenance["report"] == report.to_json()
    assert data.provenance["counts"]["visits"] == 5


def test_top_n_ties_min_visits_last_and_nan_times() -> None:
    events, visits = small()
    report = DataReport()
    data = assemble_ehr(events, visits, knowledge, name="t", report=report, min_visits=2,
                        top_n={"diagnoses": 1})
    # d1 is the most frequent; only patient 10 keeps >= 2 complete visits (200 loses d3 -> no diagnoses)
    assert data.vocabularies["diagnoses"].idx2word == ["d1"]
    assert data.patient_ids == ["10"] and data.n_visits == 2
    steps = {d.step: d.count for d in report.drops}
    assert steps["diagnoses: top-1 filter"] == 2 and steps["visits: no diagnoses"] == 1
    reason = {d.step: d.reason for d in report.drops}["diagnoses: top-1 filter"]
    assert "(2 codes removed; 1 visits lost every diagnoses code" in reason  # d2, d3; visit 200
    assert steps["patients: fewer than 2 visits"] == 2
    # ties broken by code: m1 (5 rows) beats m2 (1 row); p1 vs p2 -> p1
    visits.loc[:, "TIME"] = np.nan
    report = DataReport()
    data = assemble_ehr(events, visits, knowledge, name="t", report=report, min_visits=1)
    assert data.time is not None and np.isnan(data.time).all()
    assert data.patient_ids == ["9", "10", "11"]
    assert [data.patient_ids[0]] == ["9"] and "ordered by visit id" in report.notes[0]


def test_errors() -> None:
    events, visits = small()
    with pytest.raises(ValueError, match="repeats visit '300' of patient '10'"):
        assemble_ehr(events, pd.concat([visits, visits.iloc[:1]]), knowledge, name="t", report=DataReport())
    with pytest.raises(ValueError, match="lacks columns"):
        assemble_ehr(events, visits.drop(columns="TIME"), knowledge, name="t", report=DataReport())
    with pytest.raises(ValueError, match="no visit survives"):
        assemble_ehr(events, visits, knowledge, name="t", report=DataReport(), min_visits=10)


def test_a_million_events_in_seconds() -> None:
    rng = np.random.default_rng(0)
    n_visits, n_events = 50_000, 1_000_000
    visits = pd.DataFrame({
        "PATIENT": (np.arange(n_visits) // 3).astype(str), "VISIT": np.arange(n_visits).astype(str),
        "TIME": rng.random(n_visits), "HOSPITAL": np.arange(n_visits) % 7,
    })
    events = {}
    for vocab in ("diagnoses", "procedures", "medications"):
        v = rng.integers(0, n_visits, n_events // 3)
        events[vocab] = pd.DataFrame({"PATIENT": (v // 3).astype(str), "VISIT": v.astype(str),
                                      "CODE": rng.zipf(1.5, len(v)).astype(str)})
    started = time.perf_counter()
    data = assemble_ehr(events, visits, knowledge, name="big", report=DataReport(), min_visits=2,
                        top_n={"diagnoses": 2000})
    assert time.perf_counter() - started < 15
    assert len(data.vocabularies["diagnoses"]) <= 2000 and data.hospital is not None
    t = data.time
    for p in range(0, data.n_patients, 997):
        assert np.all(np.diff(t[data.visit_offsets[p]:data.visit_offsets[p + 1]]) >= 0)
