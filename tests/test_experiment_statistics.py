"""Statistics on demand in a whole run: computed only when asked, from training visits, reported."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

import medtoolkit
import medtoolkit.components.statistics as statistics
from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.params import Params
from medtoolkit.components.statistics import code_counts, pair_counts
from medtoolkit.experiment import Experiment
from medtoolkit.hookspecs import Register
from medtoolkit.plugins import PluginHost
from medtoolkit.tasks.medication import visits_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "device": "cpu",
    "dataset": {"type": "synthetic", "n_patients": 40, "n_diagnoses": 30, "n_procedures": 20, "n_drugs": 10,
                "seed": 0, "mean_diagnoses": 5, "mean_procedures": 3, "mean_medications": 4, "n_ddi_pairs": 6,
                "n_substructures": 0, "n_conditions": 4},
    "task": {"type": "medication_recommendation", "protocol": "random", "seeds": [0]},
    "model": {"type": "gamenet", "hidden_dim": 8,
              "encoder": {"type": "gru", "embedding_dim": 8, "hidden_dim": 8, "output_dim": 8}},
    "losses": [{"type": "bce"}],
    "trainer": {"epochs": 1, "lr": 0.01, "batch_size": 8, "progress": "none"},
    "eval": {"bootstrap_rounds": 0},
}
NEEDED = (code_counts("medications"), pair_counts("diagnoses", "medications"))


class PriorBCELoss(BCELoss):
    """A toy loss that reads two training statistics when built (and ignores them)."""

    class Params(BCELoss.Params):
        pass

    @classmethod
    def statistics_needed(cls, params: Params) -> frozenset[str]:
        return frozenset(NEEDED)

    def __init__(self, params: Params | None = None, schema: Any = None) -> None:
        super().__init__(params, schema)
        self.seen = {name: schema.require_statistic(name, "loss 'prior_bce'") for name in NEEDED}
        self.register_buffer("prior", torch.as_tensor(self.seen[NEEDED[0]]))


class PriorPlugin:
    @medtoolkit.hookimpl
    def register_losses(self, register: Register) -> None:
        register("prior_bce", PriorBCELoss)


def test_a_gamenet_run_computes_no_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statistics, "compute_statistic",
                        lambda *args, **kwargs: pytest.fail("a statistic was computed that nobody asked for"))
    result = medtoolkit.build(TINY).run(progress=False)
    assert "statistics" not in result.metrics["data"]
    assert "statistics" not in result.report_markdown


def test_a_run_reports_the_statistics_its_components_required(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    calls: list[tuple[str, list[int]]] = []
    compute = statistics.compute_statistic

    def recording(data: Any, visits: np.ndarray, name: str) -> np.ndarray:
        calls.append((name, sorted(visits.tolist())))
        return compute(data, visits, name)

    monkeypatch.setattr(statistics, "compute_statistic", recording)
    host = PluginHost(load_entry_points=False, extra_plugins=(("medtoolkit-prior", "1", PriorPlugin()),))
    config = {**TINY, "losses": [{"type": "prior_bce"}]}
    experiment = Experiment.from_config(config, host=host)
    result = experiment.run(out_dir=tmp_path / "run", progress=False)
    expected = {NEEDED[0]: [10], NEEDED[1]: [30, 10]}
    assert result.metrics["data"]["statistics"] == expected
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["data"]["statistics"] == expected
    report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert ("- training statistics: `code_counts/medications` [10], `pair_counts/diagnoses/medications` [30 x 10]"
            in report.splitlines())
    # each statistic computed once, over the training visits of the split only
    data = experiment.load_data(progress=False)
    split = experiment.config.task.build(None).splits(data)[0]
    train = sorted(visits_of(data, split.train).tolist())
    assert len(train) < data.n_visits
    assert sorted(name for name, _ in calls) == sorted(NEEDED)
    assert all(visits == train for _, visits in calls)


def test_fit_evaluate_reports_the_statistics_of_its_models_schema() -> None:
    """The Python path (``fit_evaluate``) reports statistics the same way as a run file."""
    from medtoolkit.components.recommenders.gamenet import GAMENet
    from medtoolkit.config import EvalParams, TrainerParams

    experiment = medtoolkit.build(TINY)
    data = experiment.load_data(progress=False)
    task = experiment.config.task.build(None)
    split = task.splits(data)[0]
    schema = task.build_schema(data, split)
    model = experiment.config.model.build(schema)
    assert isinstance(model, GAMENet)
    loss = PriorBCELoss(PriorBCELoss.Params(), schema)
    result = medtoolkit.fit_evaluate(model, [loss], data, task=task, split=split,
                                     trainer=TrainerParams(epochs=1, batch_size=8, progress="none"),
                                     eval=EvalParams(bootstrap_rounds=0), device="cpu")
    assert result.metrics["data"]["statistics"] == {NEEDED[0]: [10], NEEDED[1]: [30, 10]}
