"""The package_recommendation task: candidates from training neighbours, likelihood choice (hand-computed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from medtoolkit.config import EvalParams
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.vocab import Vocabulary
from medtoolkit.experiment import Experiment
from medtoolkit.tasks.medication import Split
from medtoolkit.tasks.package_choice import Candidates, choose_by_likelihood
from medtoolkit.tasks.package_task import PackageRecommendationTask, visit_features
from medtoolkit.tasks.packages import package_scores
from medtoolkit.training.predict import Predictions

# Five patients; features D0..D3, P0..P1; four drugs. Train 0, 1, 2; test 3; validation 4.
#   patient  visit  diagnoses  procedures  medications
#   0        0      {0}        {0}         {0, 1}      package 0
#   0        1      {0, 1}     {0}         {0}         package 1
#   1        0      {2}        {1}         {2}         package 2
#   2        0      {3}        {1}         {2, 3}      package 3
#   3 (test) 0      {0}        {0}         {3}         only in test: never a package
#   3 (test) 1      {2, 3}     {1}         {2, 3}      package 3
#   4 (val)  0      {1}        {}          {1}
RECORDS = [
    [[[0], [0], [0, 1]], [[0, 1], [0], [0]]],
    [[[2], [1], [2]]],
    [[[3], [1], [2, 3]]],
    [[[0], [0], [3]], [[2, 3], [1], [2, 3]]],
    [[[1], [], [1]]],
]
SPLIT = Split("hand", train=np.array([0, 1, 2]), val=np.array([4]), test=np.array([3]))
DDI = np.zeros((4, 4), dtype=np.float32)
DDI[2, 3] = DDI[3, 2] = 1.0


@pytest.fixture()
def data() -> EHRData:
    vocabularies = {
        DIAGNOSES: Vocabulary([f"D{i}" for i in range(4)], DIAGNOSES),
        PROCEDURES: Vocabulary([f"P{i}" for i in range(2)], PROCEDURES),
        MEDICATIONS: Vocabulary([f"M{i}" for i in range(4)], MEDICATIONS),
    }
    return EHRData.from_records(RECORDS, vocabularies, DrugKnowledge(ddi_adjacency=DDI), name="hand")


def task(k: int = 2, **params: Any) -> PackageRecommendationTask:
    return PackageRecommendationTask(PackageRecommendationTask.Params(k_neighbours=k, **params))


def make_predictions(probabilities: list[list[float]]) -> Predictions:
    return Predictions(
        probabilities=np.array(probabilities, dtype=np.float32),
        targets=np.array([[0, 0, 0, 1], [0, 0, 1, 1]], dtype=bool),
        visit_patient=np.array([3, 3]),
        visit_position=np.array([0, 1]),
    )


def log_likelihood(p: list[float], package: set[int]) -> float:
    return sum(math.log(p[d]) if d in package else math.log(1 - p[d]) for d in range(len(p)))


def test_index_is_built_from_training_visits_only(data: EHRData) -> None:
    training = task().training_packages(data, SPLIT)
    np.testing.assert_array_equal(training.index.packages, np.array(
        [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], dtype=bool))
    np.testing.assert_array_equal(training.visits, [0, 1, 2, 3])  # visits 4, 5 (test) and 6 (val) excluded
    np.testing.assert_array_equal(training.index.visit_package, [0, 1, 2, 3])
    # drug counts 2, 1, 2, 1 over 4 visits: mean set size 1.5; frequency ranks (ties: lower index first)
    assert training.mean_set_size == 1.5
    np.testing.assert_array_equal(training.frequency_rank, [0, 2, 1, 3])
    np.testing.assert_array_equal(visit_features(data, training.visits),
                                  [[1, 0, 0, 0, 1, 0], [1, 1, 0, 0, 1, 0], [0, 0, 1, 0, 0, 1], [0, 0, 0, 1, 0, 1]])


def test_chosen_package_is_the_likelihood_argmax_among_neighbour_packages(data: EHRData) -> None:
    # neighbours are training visits v0 (D0 P0), v1 (D0 D1 P0), v2 (D2 P1), v3 (D3 P1)
    # test visit 0 (D0, P0): cosine 1 with v0, 2 / (sqrt 2 sqrt 3) = 0.816 with v1, 0 with v2, v3
    #   -> K = 2 neighbours v0, v1: candidates {0, 1}
    # test visit 1 (D2, D3, P1): 0 with v0, v1, 2 / (sqrt 3 sqrt 2) = 0.816 with v2 and v3: candidates {2, 3}
    p0 = [0.9, 0.4, 0.2, 0.7]
    p1 = [0.9, 0.1, 0.6, 0.3]
    packages = [{0, 1}, {0}, {2}, {2, 3}]
    ll0 = [log_likelihood(p0, packages[c]) for c in (0, 1)]
    ll1 = [log_likelihood(p1, packages[c]) for c in (2, 3)]
    # visit 0: {0}: .9 * .6 * .8 * .3 = 0.1296 beats {0,1}: 0.0864
    assert math.isclose(math.exp(ll0[1]), 0.1296) and int(np.argmax(ll0)) == 1
    # visit 1: {2}: .1 * .9 * .6 * .7 = 0.0378 beats {2,3}: 0.0162; package {0} (0.2268) would be
    # better still but belongs to no neighbour
    assert math.isclose(math.exp(ll1[0]), 0.0378) and int(np.argmax(ll1)) == 0
    assert log_likelihood(p1, {0}) > max(ll1)

    the_task = task(k=2)
    chosen = the_task.choose_packages(make_predictions([p0, p1]), data, SPLIT)
    np.testing.assert_array_equal(chosen.probabilities, [[1, 0, 0, 0], [0, 0, 1, 0]])
    assert chosen.probabilities.dtype == np.float32
    np.testing.assert_array_equal(chosen.visit_patient, [3, 3])
    np.testing.assert_array_equal(chosen.visit_position, [0, 1])

    # candidates 2 + 2; the true set of visit 1 ({2, 3}) is a candidate, that of visit 0 ({3}) is no package
    result = the_task.evaluate(chosen.probabilities, chosen.targets, chosen.visit_patient,
                               the_task.build_schema(data, SPLIT), EvalParams(bootstrap_rounds=0))
    packages_entry = result["packages"]
    assert packages_entry["relations"]["source"] == "ddi_adjacency"
    assert "antagonism only" in packages_entry["relations"]["note"]
    assert packages_entry == {"k_neighbours": 2, "scoring": "likelihood", "similarity": "codes",
                              "mean_candidates": 2.0, "true_set_among_candidates": 0.5, "n_train_packages": 4,
                              "generated_share": 0.0, "graph_threshold": 0.01,
                              "relations": packages_entry["relations"]}
    assert packages_entry["relations"]["coverage"] == 1.0
    table = the_task.prediction_table()
    assert table.to_dict("list") == {"patient": [3, 3], "patient_id": [data.patient_ids[3]] * 2, "visit": [0, 1], "package": [1, 2], "generated": [0, 0],
                                     "n_candidates": [2, 2], "drugs": ["M0", "M2"]}
    # the statistics are consumed by the evaluation
    again = the_task.evaluate(chosen.probabilities, chosen.targets, chosen.visit_patient,
                              the_task.build_schema(data, SPLIT), EvalParams(bootstrap_rounds=0))
    assert "packages" not in again


def test_metrics_are_the_package_metrics(data: EHRData) -> None:
    the_task = task(k=2)
    chosen = the_task.choose_packages(make_predictions([[0.9, 0.4, 0.2, 0.7], [0.9, 0.1, 0.6, 0.3]]), data, SPLIT)
    result = the_task.evaluate(chosen.probabilities, chosen.targets, chosen.visit_patient,
                               the_task.build_schema(data, SPLIT), EvalParams(bootstrap_rounds=0, averaging="visit"))
    # chosen {0} vs true {3}: all 0; chosen {2} vs true {2, 3}: precision 1, recall 1/2, F1 2/3, Jaccard 1/2
    expected = {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "jaccard": 0.25}
    reference = package_scores(chosen.probabilities.astype(bool), chosen.targets, DDI)["means"]
    for metric, value in expected.items():
        assert result[metric]["mean"] == pytest.approx(value)
        assert reference[metric] == pytest.approx(value)
    assert result["ddi_rate"]["mean"] == pytest.approx(reference["ddi_rate"]) == 0.0


def test_a_package_seen_only_in_test_is_never_chosen(data: EHRData) -> None:
    # the model is sure of {3} (the true set of visit 0, never prescribed in training)
    sure = [0.02, 0.01, 0.01, 0.99]
    chosen = task(k=4).choose_packages(make_predictions([sure, sure]), data, SPLIT)
    # all four training packages are candidates (K = 4 = every training visit); {3} is none:
    # {2,3}: .98*.99*.01*.99 = 0.0096 beats {0}: .02*.99*.99*.01 = 0.0002, {2}: 0.0001, {0,1}: 0.000002
    assert log_likelihood(sure, {2, 3}) > max(log_likelihood(sure, s) for s in ({0}, {2}, {0, 1}))
    np.testing.assert_array_equal(chosen.probabilities, [[0, 0, 1, 1], [0, 0, 1, 1]])
    assert not (chosen.probabilities == [0, 0, 0, 1]).all(axis=1).any()


def test_k_larger_than_the_training_visits_is_refused(data: EHRData) -> None:
    with pytest.raises(ValueError, match=r"task.k_neighbours = 5 exceeds the 4 training visits"):
        task(k=5).choose_packages(make_predictions([[0.5] * 4, [0.5] * 4]), data, SPLIT)
    with pytest.raises(ValidationError):
        PackageRecommendationTask.Params(k_neighbours=0)
    with pytest.raises(ValidationError):
        PackageRecommendationTask.Params(scoring="dot")  # type: ignore[arg-type]


def test_a_malformed_relations_file_is_refused_when_the_schema_is_built(data: EHRData, tmp_path: Path) -> None:
    (tmp_path / "Drugbank.txt").write_text("drug1 drug2 Label\nDB00001 DB00002 notanumber\n")
    (tmp_path / "Interaction_information.csv").write_text("x\n")
    (tmp_path / "drug_smiles.csv").write_text("id,smiles\n")
    the_task = PackageRecommendationTask(PackageRecommendationTask.Params(relations=str(tmp_path)))
    with pytest.raises(ValueError, match=r"Drugbank.txt, line 2: Label 'notanumber' is not a positive integer"):
        the_task.build_schema(data, SPLIT)


def test_training_visits_are_refused(data: EHRData) -> None:
    leaked = Predictions(probabilities=np.full((1, 4), 0.5, np.float32), targets=np.zeros((1, 4), bool),
                         visit_patient=np.array([0]), visit_position=np.array([0]))
    with pytest.raises(ValueError, match="training patients"):
        task().choose_packages(leaked, data, SPLIT)


def test_choose_by_likelihood_ties_go_to_the_first_candidate() -> None:
    packages = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    candidates = Candidates.of_packages(packages, np.array([0, 2, 3]), np.array([0, 1, 2]))
    chosen = choose_by_likelihood(np.array([[0.5, 0.5], [0.9, 0.9]]), candidates)
    np.testing.assert_array_equal(chosen, [0, 2])


def test_end_to_end_run_reports_packages(tmp_path: Path) -> None:
    raw = {
        "name": "packages", "seed": 0, "device": "cpu",
        "dataset": {"type": "synthetic", "n_patients": 40, "n_diagnoses": 30, "n_procedures": 20, "n_drugs": 12,
                    "seed": 0, "mean_diagnoses": 5, "mean_procedures": 3, "mean_medications": 4,
                    "n_ddi_pairs": 8, "n_substructures": 0},
        "task": {"type": "package_recommendation", "protocol": "random", "k_neighbours": 3},
        "model": {"type": "logistic_regression"},
        "losses": [{"type": "bce"}],
        "trainer": {"epochs": 1, "batch_size": 8, "progress": "none"},
        "eval": {"bootstrap_rounds": 2},
    }
    result = Experiment.from_config(raw).run(out_dir=tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    packages = metrics["test"]["packages"]
    assert packages["k_neighbours"] == 3
    assert packages["mean_candidates"] >= 1
    assert 0 <= packages["true_set_among_candidates"] <= 1
    assert packages["n_train_packages"] >= 1
    assert 0 <= metrics["test"]["f1"]["mean"] <= 1
    assert result.metrics["test"]["packages"] == packages
    table = pd.read_csv(tmp_path / "run" / f"predictions_{metrics['protocol']['splits'][0]}.csv")
    assert list(table.columns) == ["patient", "patient_id", "visit", "package", "generated", "n_candidates", "drugs"]
    assert len(table) > 0 and table["patient"].is_monotonic_increasing
    assert (table["n_candidates"] >= 1).all() and (table["generated"] == 0).all()
