"""The Python path: parts built as objects -> :func:`medtoolkit.fit.fit_evaluate` -> report directory.

The documented example (``examples/python_api.py``, shown in docs/quickstart.rst) runs on the
built-in MIMIC-III demo for 2 epochs and must match ``medtoolkit train gamenet`` number for
number; the other tests use a tiny synthetic dataset.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import medtoolkit
from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.recommenders.logistic_regression import LogisticRegressionRecommender
from medtoolkit.config import EvalParams, TrainerParams
from medtoolkit.data.loaders.synthetic import SyntheticDataset
from medtoolkit.experiment import RunResult, evaluate_run
from medtoolkit.fit import fit_evaluate
from medtoolkit.tasks.medication import MedicationRecommendationTask
from medtoolkit.training.checkpoint import load_checkpoint
from medtoolkit.training.device import seed_everything
from medtoolkit.training.run_dir import RunDirectoryError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "python_api.py"
REPORT = ["checkpoint_seed0.pt", "config.yaml", "curves.png", "metrics.json", "model_seed0.pt", "report.md"]
#: metrics.json keys that measure time or memory, not the model
MEASURED = ("wall_seconds", "epoch_seconds", "peak_memory_mb", "peak_gpu_memory_mb")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("python_api_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unmeasured(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` less timings and memory (per-epoch seconds included)."""
    out = {k: v for k, v in metrics.items() if k not in MEASURED}
    out["history"] = {
        split: {**h, "epochs": [{k: v for k, v in e.items() if k != "seconds"} for e in h["epochs"]]}
        for split, h in metrics["history"].items()
    }
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[RunResult, Path], tuple[RunResult, Path]]:
    """The example in Python and the ``gamenet`` preset, both 2 epochs on the demo."""
    python_dir, config_dir = tmp_path_factory.mktemp("python"), tmp_path_factory.mktemp("config")
    python = load_example().main(str(python_dir), epochs=2, device="cpu")
    config = medtoolkit.build("gamenet", ["trainer.epochs=2", "device=cpu", "trainer.progress=none"]).run(
        out_dir=config_dir, progress=False
    )
    return (python, python_dir), (config, config_dir)


def test_the_example_writes_the_full_report_directory(both: Any) -> None:
    (result, out), _ = both
    assert sorted(p.name for p in out.iterdir()) == REPORT
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8")) == json.loads(json.dumps(result.metrics))
    assert (out / "report.md").read_text(encoding="utf-8") == result.report_markdown
    assert result.out_dir == out and set(result.models) == {"seed0"}


def test_the_example_matches_the_preset_run_number_for_number(both: Any) -> None:
    (python, _), (config, _) = both
    assert python.metrics["test"] == config.metrics["test"]
    assert len(python.metrics["epoch_seconds"]) == 2
    # progress is a reporting setting: the only config difference, and not in metrics.json
    assert unmeasured(python.metrics) == unmeasured(config.metrics)


def test_the_example_config_yaml_is_the_presets(both: Any) -> None:
    (_, python_dir), (_, config_dir) = both
    written = yaml.safe_load((python_dir / "config.yaml").read_text(encoding="utf-8"))
    preset = yaml.safe_load((config_dir / "config.yaml").read_text(encoding="utf-8"))
    assert written == {**preset, "trainer": {**preset["trainer"], "progress": "auto"}}
    assert load_checkpoint(python_dir / "model_seed0.pt")["config"] == written


def test_evaluate_reproduces_the_python_run(both: Any) -> None:
    (result, out), _ = both
    assert evaluate_run(out)["test"] == result.metrics["test"]


# ---------------------------------------------------------------------------- tiny synthetic runs
@pytest.fixture(scope="module")
def parts() -> tuple[SyntheticDataset, Any, MedicationRecommendationTask, Any]:
    dataset = SyntheticDataset(SyntheticDataset.Params(
        n_patients=60, n_diagnoses=40, n_procedures=30, n_drugs=12, mean_diagnoses=5, mean_procedures=3,
        mean_medications=4, n_ddi_pairs=8, n_substructures=0, n_conditions=4,
    ))
    data = dataset.load(progress=False)
    task = MedicationRecommendationTask(MedicationRecommendationTask.Params())
    return dataset, data, task, task.splits(data)[0]


def logistic(parts: Any, loss_class: type = BCELoss) -> tuple[Any, list[Any]]:
    _, data, task, split = parts
    schema = task.build_schema(data, split)
    seed_everything(0)
    return LogisticRegressionRecommender(LogisticRegressionRecommender.Params(), schema), [
        loss_class(loss_class.Params(), schema)
    ]


SETTINGS: dict[str, Any] = {"trainer": TrainerParams(epochs=1, progress="none"), "eval": EvalParams(bootstrap_rounds=2),
                            "device": "cpu"}


def test_without_out_dir_nothing_is_written(parts: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset, data, task, split = parts
    monkeypatch.chdir(tmp_path)
    model, losses = logistic(parts)
    result = medtoolkit.fit_evaluate(model, losses, data, task=task, **SETTINGS)  # split: the task's first
    assert result.out_dir is None and list(tmp_path.iterdir()) == []
    assert result.metrics["name"] == result.metrics["model"] == "logistic_regression"
    assert result.metrics["protocol"]["splits"] == [split.name] and result.models[split.name] is model


class PrivateBCE(BCELoss):
    """A loss class no plugin registered: the run cannot be written as a run file."""


def test_an_unregistered_part_gives_every_report_file_but_config_yaml(parts: Any, tmp_path: Path) -> None:
    dataset, data, task, split = parts
    model, losses = logistic(parts, PrivateBCE)
    result = fit_evaluate(model, losses, data, task=task, split=split, dataset=dataset, out_dir=tmp_path,
                          name="private", **SETTINGS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(REPORT) - {"config.yaml"})
    assert result.metrics["name"] == "private"
    saved = load_checkpoint(tmp_path / "model_seed0.pt")["config"]  # still described, by class
    assert saved["losses"] == [{"class": f"{__name__}.PrivateBCE"}]
    assert saved["model"]["type"] == "logistic_regression"


def test_without_the_dataset_component_there_is_no_config_yaml(parts: Any, tmp_path: Path) -> None:
    _, data, task, split = parts
    model, losses = logistic(parts)
    fit_evaluate(model, losses, data, task=task, split=split, out_dir=tmp_path, **SETTINGS)
    assert "config.yaml" not in {p.name for p in tmp_path.iterdir()}
    assert load_checkpoint(tmp_path / "model_seed0.pt")["config"]["dataset"] is None


def test_a_run_directory_is_guarded_as_for_medtoolkit_train(parts: Any, tmp_path: Path) -> None:
    dataset, data, task, split = parts
    first = fit_evaluate(*logistic(parts), data, task=task, split=split, dataset=dataset, out_dir=tmp_path,
                         **SETTINGS)
    with pytest.raises(RunDirectoryError, match="already holds a run .*pass --resume to continue it or --overwrite"):
        fit_evaluate(*logistic(parts), data, task=task, split=split, dataset=dataset, out_dir=tmp_path, **SETTINGS)
    again = fit_evaluate(*logistic(parts), data, task=task, split=split, dataset=dataset, out_dir=tmp_path,
                         overwrite=True, **SETTINGS)
    assert again.metrics["test"] == first.metrics["test"]
    longer = fit_evaluate(*logistic(parts), data, task=task, split=split, dataset=dataset, out_dir=tmp_path,
                          resume=True, **{**SETTINGS, "trainer": TrainerParams(epochs=2, progress="none")})
    assert [e["epoch"] for e in longer.metrics["history"]["seed0"]["epochs"]] == [1, 2]
    assert evaluate_run(tmp_path)["test"] == longer.metrics["test"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(losses=[BCELoss]),
         "losses[0] is the class BCELoss; build it: BCELoss(BCELoss.Params(...), schema)"),
        (lambda a: a.update(losses=a["losses"][0]),
         "losses must be a list of Loss objects, got a BCELoss object; pass [loss]"),
        (lambda a: a.update(model=LogisticRegressionRecommender),
         "model is the class LogisticRegressionRecommender; build it: "
         "LogisticRegressionRecommender(LogisticRegressionRecommender.Params(...), schema)"),
        (lambda a: a.update(model="gamenet"), "model must be a Recommender object, got a str object"),
        (lambda a: a.update(data={}), "data must be an EHRData object, got a dict object (load it with dataset.load())"),
        (lambda a: a.update(task=MedicationRecommendationTask),
         "task is the class MedicationRecommendationTask; build it: "
         "MedicationRecommendationTask(MedicationRecommendationTask.Params(...))"),
        (lambda a: a.update(trainer={"epochs": 1}),
         "trainer must be a TrainerParams object, got a dict object (e.g. TrainerParams(epochs=10))"),
    ],
)
def test_wrong_inputs_are_refused_with_how_to_fix_them(parts: Any, change: Any, message: str) -> None:
    _, data, task, split = parts
    model, losses = logistic(parts)
    arguments: dict[str, Any] = {"model": model, "losses": losses, "data": data, "task": task, **SETTINGS}
    change(arguments)
    with pytest.raises(TypeError) as refused:
        fit_evaluate(arguments.pop("model"), arguments.pop("losses"), arguments.pop("data"), **arguments)
    assert str(refused.value) == message


def test_no_loss_is_refused(parts: Any) -> None:
    _, data, task, _ = parts
    model, _ = logistic(parts)
    with pytest.raises(ValueError) as refused:
        fit_evaluate(model, [], data, task=task, **SETTINGS)
    assert str(refused.value) == (
        "losses is empty: pass at least one Loss object (e.g. BCELoss(BCELoss.Params(), schema))"
    )
