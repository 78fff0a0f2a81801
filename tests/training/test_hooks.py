"""The two generic hooks of the experiment loop: ``Task.predict`` and ``Recommender.fit_state``.

A task owns the test predictions it scores (single-stage runs, every unit of a staged run,
``evaluate_run``); a recommender may keep state fitted on the training patients after
training, in fitted-state buffers that model files (stage and unit files included) carry.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import medtoolkit
from medtoolkit.components.base import Recommender, fitted_state_keys
from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.config import EvalParams, TrainerParams
from medtoolkit.data.batching import iterate_batches
from medtoolkit.experiment import evaluate_run
from medtoolkit.fit import fit_evaluate
from medtoolkit.plugins import PluginHost
from medtoolkit.tasks.medication import MedicationRecommendationTask
from medtoolkit.training.checkpoint import load_checkpoint
from medtoolkit.training.device import seed_everything
from medtoolkit.training.predict import Predictions
from medtoolkit.training.stages import StageRunner, patient_hospitals

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")


# ---------------------------------------------------------------------------- toy parts
class PerfectTask(MedicationRecommendationTask):
    """Predicts the true medications (probability 1 or 0) whatever the model says."""

    calls: list[np.ndarray] = []

    def predict(self, model: Any, data: Any, split: Any, patients: np.ndarray, batch_size: int,
                device: Any) -> Predictions:
        type(self).calls.append(np.array(patients))
        predictions = super().predict(model, data, split, patients, batch_size, device)
        predictions.probabilities = predictions.targets.astype(np.float32)
        return predictions


class MeanMedications(Recommender):
    """Predicts the mean training medication vector (fitted state) plus a trainable bias logit."""

    def __init__(self, params: Any = None, schema: Any = None) -> None:
        super().__init__(params, schema)
        self.bias = torch.nn.Parameter(torch.zeros(schema.n_drugs))
        # the size is only known after fit_state: an empty placeholder, resized on load
        self.register_fitted_state("mean", torch.zeros(0))
        self.fitted_on: list[np.ndarray] = []

    def fit_state(self, data: Any, patients: np.ndarray, schema: Any) -> None:
        assert not torch.is_grad_enabled() and not self.training
        self.fitted_on.append(np.array(patients))
        self.register_fitted_state("mean", mean_medications(data, patients).to(self.bias.device))

    def forward(self, batch: Any) -> torch.Tensor:
        mean = self.mean if self.mean.numel() else torch.full_like(self.bias, 0.5)
        logits = torch.logit(mean.clamp(1e-4, 1 - 1e-4)) + self.bias
        return logits.expand(*batch.visit_mask.shape, -1)


class RuleMeanMedications(MeanMedications):
    """The same, not trained at all (a rule-based recommender)."""

    trainable = False


def mean_medications(data: Any, patients: np.ndarray) -> torch.Tensor:
    """``[n_drugs]`` mean multi-hot medication vector over the visits of ``patients``."""
    total, visits = torch.zeros(data.n_drugs), 0
    for batch in iterate_batches(data, np.asarray(patients), 64, sort_by_length=False):
        mask = batch.visit_mask
        total += batch.medications[mask].float().sum(0)
        visits += int(mask.sum())
    return total / max(visits, 1)


class ToyHooks:
    @medtoolkit.hookimpl
    def register_recommenders(self, register: Any) -> None:
        register("toy_mean", MeanMedications)
        register("toy_rule_mean", RuleMeanMedications)

    @medtoolkit.hookimpl
    def register_tasks(self, register: Any) -> None:
        register("toy_perfect", PerfectTask)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(load_entry_points=False, extra_plugins=(("toy-hooks", "1.0", ToyHooks()),))


CONFIG: dict[str, Any] = {
    "name": "hooks",
    "seed": 3,
    "device": "cpu",
    "dataset": {"type": "synthetic", "n_patients": 60, "n_diagnoses": 20, "n_procedures": 10, "n_drugs": 8,
                "seed": 0, "mean_diagnoses": 3, "mean_procedures": 2, "mean_medications": 3, "n_ddi_pairs": 4,
                "n_substructures": 0, "n_conditions": 3, "n_hospitals": 3},
    "task": {"type": "medication_recommendation", "seeds": [0]},
    "model": {"type": "toy_mean"},
    "losses": [{"type": "bce"}],
    "trainer": {"epochs": 2, "lr": 0.05, "batch_size": 8, "progress": "none"},
    "eval": {"bootstrap_rounds": 0},
}
STAGES = [
    {"name": "pre"},
    {"name": "tune", "init_from": "pre", "repeat_per": "hospital", "trainer": {"epochs": 1}},
]


def config(**changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(CONFIG)
    result.update(copy.deepcopy(changes))
    return result


def world(host: PluginHost, raw: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    experiment = medtoolkit.build(raw, host=host)
    task = experiment.config.task.build(None)
    data = task.prepare(experiment.load_data(progress=False))
    return experiment, task, data, task.splits(data)[0]


# ---------------------------------------------------------------------------- Task.predict
def test_a_single_stage_run_scores_what_the_task_predicts(host: PluginHost) -> None:
    _, task, data, split = world(host, config(model={"type": "logistic_regression"}))
    perfect = PerfectTask(task.params)
    PerfectTask.calls = []
    seed_everything(0)
    schema = perfect.build_schema(data, split)
    model = medtoolkit.build(config(model={"type": "logistic_regression"}), host=host).config.model.build(schema)
    result = fit_evaluate(model, [BCELoss(BCELoss.Params(), schema)], data, task=perfect, split=split,
                          trainer=TrainerParams(epochs=1, progress="none"), eval=EvalParams(bootstrap_rounds=0),
                          device="cpu", host=host)
    assert [c.tolist() for c in PerfectTask.calls] == [np.asarray(split.test).tolist()]
    for metric in ("jaccard", "f1", "prauc"):
        assert result.metrics["test"][metric]["mean"] == pytest.approx(1.0)


def test_a_staged_run_scores_what_the_task_predicts_for_every_unit(host: PluginHost) -> None:
    experiment, task, data, split = world(host, config(model={"type": "logistic_regression"}, stages=STAGES))
    PerfectTask.calls = []
    perfect = PerfectTask(task.params)
    runner = StageRunner(experiment.config, data, split, perfect.build_schema(data, split), perfect, CPU)
    result = runner.run()
    owner = patient_hospitals(data)
    hospitals = np.unique(owner[np.concatenate([split.train, split.val, split.test])])
    assert len(PerfectTask.calls) == len(hospitals)  # the last stage only: one call per unit
    assert sorted(np.concatenate(PerfectTask.calls).tolist()) == sorted(np.asarray(split.test).tolist())
    assert result.test["jaccard"]["mean"] == pytest.approx(1.0)


def test_evaluate_run_scores_what_the_task_predicts(host: PluginHost, tmp_path: Path) -> None:
    raw = config(model={"type": "logistic_regression"}, task={"type": "toy_perfect", "seeds": [0]})
    trained = medtoolkit.build(raw, host=host).run(out_dir=tmp_path, progress=False)
    assert trained.metrics["test"]["jaccard"]["mean"] == pytest.approx(1.0)
    assert evaluate_run(tmp_path, host=host)["test"] == trained.metrics["test"]


# ---------------------------------------------------------------------------- Recommender.fit_state
@pytest.mark.parametrize("model", ["toy_mean", "toy_rule_mean"])
def test_fitted_state_is_saved_with_the_model_and_evaluated_back(host: PluginHost, tmp_path: Path,
                                                                 model: str) -> None:
    _, _, data, split = world(host, config())
    result = medtoolkit.build(config(model={"type": model}), host=host).run(out_dir=tmp_path, progress=False)
    trained = result.models[split.name]
    assert [p.tolist() for p in trained.fitted_on] == [np.asarray(split.train).tolist()]
    expected = mean_medications(data, split.train)
    assert torch.allclose(trained.mean, expected)
    saved = load_checkpoint(tmp_path / f"model_{split.name}.pt")["model"]
    assert torch.allclose(saved["mean"], expected)
    assert evaluate_run(tmp_path, host=host)["test"] == result.metrics["test"]


def test_fitted_state_keys_name_the_declared_buffers(host: PluginHost) -> None:
    _, task, data, split = world(host, config())
    model = MeanMedications(None, task.build_schema(data, split))
    assert fitted_state_keys(model) == {"mean"}
    wrapper = torch.nn.Module()
    wrapper.inner = model
    assert fitted_state_keys(wrapper) == {"inner.mean"}


def test_unit_files_of_a_repeated_stage_carry_each_units_fitted_state(host: PluginHost, tmp_path: Path) -> None:
    raw = config(stages=STAGES)
    _, _, data, split = world(host, raw)
    result = medtoolkit.build(raw, host=host).run(out_dir=tmp_path, progress=False)
    owner = patient_hospitals(data)
    unit_files = sorted(tmp_path.glob(f"model_{split.name}.tune.h*.pt"))
    assert unit_files
    for path in unit_files:
        state = load_checkpoint(path)
        assert set(state["model"]) == {"bias", "mean"}
        train = np.asarray(split.train)[owner[split.train] == state["hospital"]]
        assert torch.allclose(state["model"]["mean"], mean_medications(data, train))
    whole = load_checkpoint(tmp_path / f"model_{split.name}.pre.pt")["model"]
    assert torch.allclose(whole["mean"], mean_medications(data, split.train))
    assert evaluate_run(tmp_path, host=host)["test"] == result.metrics["test"]
    resumed = medtoolkit.build(raw, host=host).run(out_dir=tmp_path, progress=False, resume=True)
    assert resumed.metrics["test"] == result.metrics["test"]
