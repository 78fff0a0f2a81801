"""Shared run steps: the resume key, the combination of several splits, ``metrics.json`` and the report.

Training, scoring and report writing through these steps are covered end to end by
``tests/test_experiment.py`` (config runs) and ``tests/test_fit.py`` (Python runs); here a
one-epoch logistic regression checks what ``metrics.json`` records about the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.recommenders.logistic_regression import LogisticRegressionRecommender
from medtoolkit.components.schema import DataSchema
from medtoolkit.config import EvalParams, TrainerParams
from medtoolkit.data.ehr import EHRData
from medtoolkit.tasks.medication import MedicationRecommendationTask
from medtoolkit.testing import fake_ehr, fake_schema
from medtoolkit.training import pipeline
from medtoolkit.training.pipeline import (
    METRIC_KEYS,
    SplitResult,
    combine_splits,
    resume_key,
    run_metrics,
    train_split,
    write_report,
)

CPU = torch.device("cpu")

CONFIG = {"name": "r", "seed": 1, "device": "cuda", "model": {"type": "gamenet"},
          "trainer": {"epochs": 5, "lr": 0.1, "early_stopping_patience": 2, "progress": "bar", "num_threads": 2}}


def test_resume_key_leaves_out_the_device_and_how_long_to_train() -> None:
    assert json.loads(resume_key(CONFIG)) == {"name": "r", "seed": 1, "model": {"type": "gamenet"},
                                              "trainer": {"lr": 0.1}}
    longer = {**CONFIG, "device": "cpu", "trainer": {**CONFIG["trainer"], "epochs": 50, "progress": "none"}}
    assert resume_key(longer) == resume_key(CONFIG)
    assert resume_key({**CONFIG, "trainer": {**CONFIG["trainer"], "lr": 0.2}}) != resume_key(CONFIG)


def test_resume_key_leaves_how_long_to_train_out_of_every_stage_too() -> None:
    stage = {"name": "tune", "trainer": {**CONFIG["trainer"], "lr": 0.01}, "repeat_per": "hospital"}
    staged = {**CONFIG, "stages": [stage]}
    assert json.loads(resume_key(staged))["stages"] == [
        {"name": "tune", "trainer": {"lr": 0.01}, "repeat_per": "hospital"}]
    longer = {**staged, "stages": [{**stage, "trainer": {**stage["trainer"], "epochs": 9, "progress": "log"}}]}
    assert resume_key(longer) == resume_key(staged)
    other = {**staged, "stages": [{**stage, "trainer": {**stage["trainer"], "lr": 0.02}}]}
    assert resume_key(other) != resume_key(staged)
    assert "stages" not in json.loads(resume_key(CONFIG))  # a single-stage key is unchanged


def test_one_split_is_its_own_result_and_several_are_averaged() -> None:
    one = {key: {"mean": 0.5, "std": 0.1} for key in METRIC_KEYS}
    assert combine_splits({"legacy": one}) is one
    other = {key: {"mean": 0.7, "std": 0.0} for key in METRIC_KEYS}
    combined = combine_splits({"seed0": one, "seed1": other})
    assert combined["jaccard"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1)}
    assert combined["splits"] == {"seed0": one, "seed1": other}


# ---------------------------------------------------------------------------- metrics.json and the report
@pytest.fixture(scope="module")
def tiny() -> tuple[EHRData, MedicationRecommendationTask, Any]:
    data = fake_ehr(n_patients=40, n_diagnoses=20, n_procedures=15, n_drugs=10, max_visits=4, seed=1)
    task = MedicationRecommendationTask(MedicationRecommendationTask.Params())
    return data, task, task.splits(data)[0]


def trained(tiny: tuple[EHRData, MedicationRecommendationTask, Any], with_molecules: bool,
            tmp_path: Path | None = None) -> tuple[SplitResult, DataSchema]:
    """One epoch of logistic regression selected by PRAUC; ``with_molecules``: a component built the graphs."""
    data, task, split = tiny
    schema = fake_schema(data)
    if with_molecules:
        schema.require_molecules("test")
    model = LogisticRegressionRecommender(LogisticRegressionRecommender.Params(), schema)
    result = train_split(model, [BCELoss(BCELoss.Params(), schema)], data, split, schema, task,
                         TrainerParams(epochs=1, batch_size=8, progress="none", select_metric="prauc"),
                         EvalParams(bootstrap_rounds=0), CPU, seed=0, out=tmp_path)
    return result, schema


def metrics_of(tiny: tuple[EHRData, MedicationRecommendationTask, Any], result: SplitResult) -> dict[str, Any]:
    data, task, split = tiny
    return run_metrics("r", "logistic_regression", {split.name: result}, data, task,
                       EvalParams(bootstrap_rounds=0), CPU, {}, 1.0)


def test_metrics_count_the_molecules_and_name_the_selection_metric(
    tiny: tuple[EHRData, MedicationRecommendationTask, Any]
) -> None:
    result, schema = trained(tiny, with_molecules=True)
    summary = schema.molecule_summary()
    # fake_smiles: drug 3 has no SMILES and drug 4 only one that rdkit cannot parse
    assert summary is not None and (summary["drugs"], summary["failed"], summary["drugs_without_molecules"]) == (
        10, 1, 2)
    assert (result.molecules, result.select_metric) == (summary, "prauc")
    metrics = metrics_of(tiny, result)
    assert metrics["data"]["molecules"] == summary
    assert metrics["protocol"]["select_metric"] == "prauc"
    assert json.loads(json.dumps(metrics))["data"]["molecules"] == summary


def test_metrics_without_molecules_say_none(tiny: tuple[EHRData, MedicationRecommendationTask, Any]) -> None:
    result, _ = trained(tiny, with_molecules=False)
    metrics = metrics_of(tiny, result)
    assert metrics["data"]["molecules"] is None
    assert metrics["protocol"]["select_metric"] == "prauc"


def test_write_report_titles_the_curves_and_counts_the_molecules(
    tiny: tuple[EHRData, MedicationRecommendationTask, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, _ = trained(tiny, with_molecules=True, tmp_path=tmp_path)
    metrics = metrics_of(tiny, result)
    titles: list[str | None] = []
    original = pipeline.plot_curves

    def plot(histories: dict[str, Any], path: Path, title: str | None = None) -> bool:
        titles.append(title)
        return original(histories, path, title)

    monkeypatch.setattr(pipeline, "plot_curves", plot)
    write_report(metrics, tmp_path)
    assert titles == ["r: logistic_regression on fake, protocol random"]
    assert (tmp_path / "curves.png").exists()
    report = (tmp_path / "report.md").read_text()
    (line,) = [line for line in report.splitlines() if line.startswith("- molecules: ")]
    assert line.startswith("- molecules: 10 drugs, ")
    assert line.endswith("; 1 SMILES rdkit could not parse; 2 drugs without a parsed molecule")
    assert "- best epoch: 1 of 1 (highest validation PRAUC)" in report
    assert json.loads((tmp_path / "metrics.json").read_text())["history"][tiny[2].name]["epochs"][0]["losses"] == {}
