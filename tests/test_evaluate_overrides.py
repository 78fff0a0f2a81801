"""``medtoolkit evaluate RUN -o task.<name>=...``: re-scoring a finished run with other prediction parameters."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import medtoolkit
from medtoolkit.cli import main
from medtoolkit.experiment import evaluate_run
from medtoolkit.tasks.medication import MedicationRecommendationTask
from medtoolkit.tasks.package_task import PackageRecommendationTask


@pytest.fixture(scope="module")
def package_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package_run") / "run"
    medtoolkit.build("logistic_regression", overrides=[
        "task.type=package_recommendation", "trainer.epochs=2", "trainer.progress=none"]).run(out, progress=False)
    return out


def test_the_package_task_declares_only_its_candidate_step_as_prediction_parameters() -> None:
    assert PackageRecommendationTask.prediction_params == {
        "k_neighbours", "similarity", "scoring", "top_k", "generate", "generation"}
    assert MedicationRecommendationTask.prediction_params == frozenset()


def test_rescoring_with_top_k_changes_the_chosen_sets_not_the_model(package_run: Path) -> None:
    config_before = (package_run / "config.yaml").read_text(encoding="utf-8")
    plain = evaluate_run(package_run)
    top3 = evaluate_run(package_run, overrides=["task.scoring=top_k", "task.top_k=3"])
    # every chosen set holds exactly the 3 most probable drugs
    assert top3["test"]["avg_drugs"]["mean"] == pytest.approx(3.0)
    assert top3["test"]["avg_drugs"]["std"] == pytest.approx(0.0)
    assert top3["test"]["packages"]["scoring"] == "top_k"
    assert top3["overrides"] == ["task.scoring=top_k", "task.top_k=3"]
    # without overrides the run scores as trained: the chosen training packages of the predictions file
    written = pd.read_csv(package_run / "predictions_seed0.csv")
    assert plain["test"]["avg_drugs"]["mean"] != pytest.approx(3.0)
    assert (written["package"] >= 0).all() and "overrides" not in plain
    assert (package_run / "config.yaml").read_text(encoding="utf-8") == config_before


def test_a_training_parameter_is_refused_naming_the_allowed_ones(package_run: Path) -> None:
    with pytest.raises(ValueError) as caught:
        evaluate_run(package_run, overrides=["trainer.lr=1"])
    assert str(caught.value) == (
        "evaluate may only change how test visits are predicted; 'trainer.lr=1' is not one of the task's "
        "prediction parameters (task.generate, task.generation, task.k_neighbours, task.scoring, "
        "task.similarity, task.top_k)")
    with pytest.raises(ValueError, match="'task.relations=x' is not one of the task's prediction parameters"):
        evaluate_run(package_run, overrides=["task.relations=x"])


def test_an_invalid_value_is_refused_by_validation(package_run: Path) -> None:
    with pytest.raises(ValueError, match="top_k"):
        evaluate_run(package_run, overrides=["task.top_k=0"])


def test_the_cli_passes_overrides_and_reports_one_error_line(
    package_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(package_run), "-o", "task.scoring=top_k", "-o", "task.top_k=2"]) == 0
    assert "| Avg # drugs | 2.0000 ± 0.0000 |" in capsys.readouterr().out
    assert main(["evaluate", str(package_run), "-o", "seed=3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: evaluate may only change how test visits are predicted")


def test_threshold_scoring_is_the_multi_label_recommender_on_the_same_visits(package_run: Path) -> None:
    rescored = evaluate_run(package_run, overrides=["task.scoring=threshold"])["test"]
    as_medication_task = medtoolkit.build("logistic_regression", overrides=[
        "trainer.epochs=2", "trainer.progress=none"]).run(progress=False).metrics["test"]
    # the same seed and split train the same weights: the per-drug metrics agree exactly
    for key in ("jaccard", "f1", "precision", "recall", "avg_drugs"):
        assert rescored[key]["mean"] == pytest.approx(as_medication_task[key]["mean"], abs=1e-9), key
    assert "packages" not in rescored
