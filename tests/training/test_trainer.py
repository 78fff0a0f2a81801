"""The batched trainer: loss folding, optimisation, early stopping, ``--resume``, guards.

Everything runs on the CPU with :func:`medtoolkit.testing.fake_ehr` data (40 patients) and
models a few hundred parameters wide, so each test takes well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from medtoolkit.components.base import Loss, ModelOutput, Recommender
from medtoolkit.components.encoders.gru import GRUEncoder
from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.losses.ddi import DDILoss
from medtoolkit.components.memories.gcn import GCNMemory
from medtoolkit.components.params import Node, Params
from medtoolkit.components.recommenders.gamenet import GAMENet
from medtoolkit.components.recommenders.logistic_regression import LogisticRegressionRecommender
from medtoolkit.components.recommenders.previous_visit import PreviousVisitRecommender
from medtoolkit.components.schema import DataSchema
from medtoolkit.config import TrainerParams
from medtoolkit.data.batching import PaddedBatch, make_batch
from medtoolkit.data.ehr import EHRData
from medtoolkit.testing import fake_batch, fake_ehr, fake_schema
from medtoolkit.training.checkpoint import load_checkpoint, save_atomic
from medtoolkit.training.device import seed_everything
from medtoolkit.training.trainer import (
    EpochRecord,
    Trainer,
    TrainingHistory,
    compute_loss,
    extras_needed,
    format_tracked,
    loss_label,
    run_model,
)

CPU = torch.device("cpu")
TRAIN = np.arange(0, 28)
VAL = np.arange(28, 40)


# ---------------------------------------------------------------------------- fixtures & helpers
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest


@pytest.fixture(scope="module")
def data() -> EHRData:
    return fake_ehr(n_patients=40, n_diagnoses=20, n_procedures=15, n_drugs=10, max_visits=4, seed=1)


@pytest.fixture(scope="module")
def schema(data: EHRData) -> DataSchema:
    return fake_schema(data)


def params(**overrides: Any) -> TrainerParams:
    settings: dict[str, Any] = {"epochs": 3, "lr": 0.01, "batch_size": 8, "progress": "none"}
    settings.update(overrides)
    return TrainerParams(**settings)


def gamenet(schema: DataSchema, seed: int = 0) -> GAMENet:
    """A tiny GAMENet with dropout (so resuming must also restore the torch RNG)."""
    seed_everything(seed)
    model_params = GAMENet.Params(
        encoder=Node.of(GRUEncoder, embedding_dim=8, hidden_dim=8, output_dim=8, dropout=0.3),
        memory=Node.of(GCNMemory, dropout=0.3),
        hidden_dim=8,
    )
    return GAMENet(model_params, schema)


def logistic(schema: DataSchema, seed: int = 0) -> LogisticRegressionRecommender:
    seed_everything(seed)
    return LogisticRegressionRecommender(LogisticRegressionRecommender.Params(), schema)


def annealed_losses(schema: DataSchema) -> list[Loss]:
    """BCE plus the per-visit annealed DDI switch: the DDI term has its own RNG and temperature."""
    return [
        BCELoss(BCELoss.Params(), schema),
        DDILoss(DDILoss.Params(target=0.0, granularity="visit", seed=5), schema),
    ]


def same_state(left: Any, right: Any) -> bool:
    """Exact equality of (nested) state dicts: tensors bit for bit, other values with ``==``."""
    if isinstance(left, torch.Tensor) or isinstance(right, torch.Tensor):
        return isinstance(left, torch.Tensor) and isinstance(right, torch.Tensor) and torch.equal(left, right)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same_state(left[k], right[k]) for k in left)
    return bool(left == right)


def without_seconds(history: TrainingHistory) -> dict[str, Any]:
    """History as JSON minus wall-clock times (the only part allowed to differ between runs)."""
    payload = history.to_json()
    for epoch in payload["epochs"]:
        epoch.pop("seconds")
    return payload


def scripted_validation(monkeypatch: pytest.MonkeyPatch, scores: list[float]) -> None:
    """Make ``Trainer.validate`` return ``scores[i]`` as the Jaccard of its i-th call (per trainer)."""

    def validate(self: Trainer, *args: Any, **kwargs: Any) -> dict[str, float]:
        calls = getattr(self, "_scripted_calls", 0)
        self._scripted_calls = calls + 1  # type: ignore[attr-defined]
        return {"jaccard": scores[calls], "prauc": 0.0, "f1": 0.0}

    monkeypatch.setattr(Trainer, "validate", validate)


class Interrupt(Exception):
    """Stands in for a killed process."""


def interrupt_during_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Raise :class:`Interrupt` when epoch ``epoch`` (1-based) starts training."""
    original = Trainer.train_epoch
    calls = {"n": 0}

    def train_epoch(self: Trainer, *args: Any, **kwargs: Any) -> float:
        calls["n"] += 1
        if calls["n"] == epoch:
            raise Interrupt(f"killed in epoch {epoch}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)


# ---------------------------------------------------------------------------- loss folding
class ConstantLoss(Loss):
    """An additive term worth ``value`` (times ``weight``)."""

    def __init__(self, value: float, weight: float = 1.0) -> None:
        super().__init__()
        self.value = value
        self._weight = weight

    @property
    def weight(self) -> float:
        return self._weight

    def forward(self, logits: torch.Tensor, batch: PaddedBatch) -> torch.Tensor:
        return logits.new_tensor(self.value)


class HalvingGate(Loss):
    """A gating term: records the running total it receives and halves it."""

    gating: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def forward(self, logits: torch.Tensor, batch: PaddedBatch) -> torch.Tensor:
        return logits.new_zeros(())

    def combine(self, total: torch.Tensor, logits: torch.Tensor, batch: PaddedBatch,
                extras: dict[str, Any] | None = None) -> torch.Tensor:
        self.seen.append(float(total))
        return total / 2


def test_compute_loss_folds_additive_terms_before_gating_terms() -> None:
    batch = fake_batch(fake_ehr(n_patients=3))
    logits = torch.zeros(*batch.visit_mask.shape, 15)
    gate = HalvingGate()
    # the gate is listed first, yet must see the sum of both additive terms
    total = compute_loss([gate, ConstantLoss(3.0, weight=0.9), ConstantLoss(10.0, weight=0.1)], logits, batch)
    assert gate.seen == [pytest.approx(3.7)]
    assert float(total) == pytest.approx(3.7 / 2)


def test_compute_loss_keeps_the_listed_order_within_each_group() -> None:
    batch = fake_batch(fake_ehr(n_patients=3))
    logits = torch.zeros(*batch.visit_mask.shape, 15)
    first, second = HalvingGate(), HalvingGate()
    total = compute_loss([first, ConstantLoss(8.0), second], logits, batch)
    assert first.seen == [8.0] and second.seen == [4.0]
    assert float(total) == 2.0


# ---------------------------------------------------------------------------- training
def test_training_reduces_the_loss(data: EHRData, schema: DataSchema) -> None:
    model = logistic(schema)
    losses: list[Loss] = [BCELoss(BCELoss.Params(), schema)]
    trainer = Trainer(model, losses, params(epochs=3, lr=0.05), CPU, seed=0)

    def full_loss() -> float:
        model.eval()
        with torch.no_grad():
            batch = fake_batch(data, 28)
            return float(compute_loss(losses, model(batch), batch))

    before = full_loss()
    history = trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)
    assert [e.epoch for e in history.epochs] == [1, 2, 3]
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert full_loss() < 0.9 * before
    assert set(history.epochs[0].validation) >= {"jaccard", "prauc", "f1", "ddi_rate"}


def test_on_epoch_callback_sees_every_record(data: EHRData, schema: DataSchema) -> None:
    seen: list[EpochRecord] = []
    trainer = Trainer(logistic(schema), [BCELoss(BCELoss.Params(), schema)], params(epochs=2), CPU)
    history = trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency, on_epoch=seen.append)
    assert seen == history.epochs


def test_early_stopping_stops_after_patience_and_restores_best_weights(
    data: EHRData, schema: DataSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted_validation(monkeypatch, [0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    model = logistic(schema)
    trainer = Trainer(model, [BCELoss(BCELoss.Params(), schema)], params(epochs=6, early_stopping_patience=2), CPU)

    def snapshot(record: EpochRecord) -> None:
        snapshots[record.epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    history = trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency, on_epoch=snapshot)
    # best at epoch 2; epochs 3 and 4 do not improve -> stop after epoch 4 (epoch 5 would have improved)
    assert len(history.epochs) == 4
    assert history.stopped_early
    assert history.best_epoch == 2 and history.best_score == 0.3
    assert same_state(model.state_dict(), snapshots[2])
    assert not same_state(model.state_dict(), snapshots[4])


def test_without_patience_every_epoch_runs_and_the_best_is_kept(
    data: EHRData, schema: DataSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted_validation(monkeypatch, [0.1, 0.5, 0.2, 0.2])
    trainer = Trainer(logistic(schema), [BCELoss(BCELoss.Params(), schema)], params(epochs=4), CPU)
    history = trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)
    assert len(history.epochs) == 4 and not history.stopped_early and history.best_epoch == 2


def bce_of(logits: torch.Tensor, batch: PaddedBatch) -> float:
    """BCE with logits over the batch's real visits, by hand (what ``bce`` computes)."""
    mask = batch.visit_mask
    probabilities = torch.sigmoid(logits[mask].double())
    targets = batch.medications[mask].double()
    return float(-(targets * probabilities.log() + (1 - targets) * (1 - probabilities).log()).mean())


def ddi_penalty_of(logits: torch.Tensor, batch: PaddedBatch, adjacency: np.ndarray) -> float:
    """GAMENet's mean DDI penalty ``p^T A p / N^2`` averaged over real visits, by hand."""
    p = torch.sigmoid(logits[batch.visit_mask].double()).numpy()
    n = p.shape[1]
    return float(np.mean([row @ adjacency @ row / (n * n) for row in p]))


def test_select_metric_loss_picks_the_lowest_validation_loss(data: EHRData, schema: DataSchema) -> None:
    # lr 0.05 overfits: the training loss falls every epoch while the validation loss rises
    trainer = Trainer(logistic(schema), [BCELoss(BCELoss.Params(), schema)],
                      params(epochs=3, lr=0.05, select_metric="loss"), CPU)
    history = trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)
    validation_losses = [e.validation["loss"] for e in history.epochs]
    train_losses = [e.train_loss for e in history.epochs]
    assert history.best_epoch == int(np.argmin(validation_losses)) + 1
    assert history.best_score == -min(validation_losses)
    assert int(np.argmin(train_losses)) + 1 != history.best_epoch  # never the training loss
    # the selected weights are back in the model: their validation loss is the best one
    assert trainer.validation_loss(data, VAL) == pytest.approx(min(validation_losses), rel=1e-6)


def test_validation_loss_is_the_weighted_sum_of_all_terms_by_hand(data: EHRData, schema: DataSchema) -> None:
    model = gamenet(schema)
    ddi = DDILoss(DDILoss.Params(weight=0.3, target=0.0, seed=3), schema)  # a gating term, plain here
    bce = BCELoss(BCELoss.Params(weight=0.7), schema)
    trainer = Trainer(model, [ddi, bce], params(select_metric="loss"), CPU, seed=11)
    generator_state = ddi.generator.get_state()
    model.train()  # the validation loss switches to eval mode and back
    value = trainer.validation_loss(data, VAL, batch_size=8)  # 12 patients: batches of 8 and 4
    assert model.training and ddi.training
    model.eval()
    expected = []
    with torch.no_grad():
        for patients in (VAL[:8], VAL[8:]):
            batch = make_batch(data, patients)
            logits = model(batch)
            expected.append(0.7 * bce_of(logits, batch) + 0.3 * ddi_penalty_of(logits, batch, schema.ddi_adjacency))
    assert value == pytest.approx(float(np.mean(expected)), rel=1e-5)
    # no switching decision drawn, nothing tracked, the schedule untouched
    assert torch.equal(ddi.generator.get_state(), generator_state)
    assert ddi.tracked() == {} and ddi.temperature == 2.0 and ddi.n_penalty_steps == ddi.n_prediction_steps == 0


def test_validation_loss_leaves_the_training_random_stream_alone(data: EHRData, schema: DataSchema) -> None:
    # gamenet has dropout: the same training losses with and without the validation loss
    runs = {}
    for metric in ("jaccard", "loss"):
        trainer = Trainer(gamenet(schema, seed=3), [BCELoss(BCELoss.Params(), schema)],
                          params(epochs=3, select_metric=metric), CPU, seed=3)
        runs[metric] = trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)
    assert [e.train_loss for e in runs["loss"].epochs] == [e.train_loss for e in runs["jaccard"].epochs]
    assert "loss" not in runs["jaccard"].epochs[0].validation  # computed only when it selects
    assert {"jaccard", "loss"} <= runs["loss"].epochs[0].validation.keys()


class NoisyLogistic(LogisticRegressionRecommender):
    """Adds uniform noise to its logits even in eval mode (stands in for random masking)."""

    def forward(self, batch: PaddedBatch) -> torch.Tensor:
        logits = super().forward(batch)
        return logits + torch.rand_like(logits)


def test_validation_loss_draws_the_same_randomness_every_time(data: EHRData, schema: DataSchema) -> None:
    seed_everything(0)
    model = NoisyLogistic(LogisticRegressionRecommender.Params(), schema)
    trainer = Trainer(model, [BCELoss(BCELoss.Params(), schema)], params(), CPU, seed=4)
    state = torch.get_rng_state()
    first = trainer.validation_loss(data, VAL)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is untouched
    torch.rand(5)  # whatever happened in between
    assert trainer.validation_loss(data, VAL) == first
    other = Trainer(model, [BCELoss(BCELoss.Params(), schema)], params(), CPU, seed=5)
    assert other.validation_loss(data, VAL) != first  # the draws follow the trainer's seed


@pytest.mark.parametrize("metric", ["loss", "jaccard"])
def test_without_validation_patients_the_last_epoch_is_kept(
    data: EHRData, schema: DataSchema, metric: str
) -> None:
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    model = logistic(schema)
    trainer = Trainer(model, [BCELoss(BCELoss.Params(), schema)],
                      params(epochs=4, lr=0.05, select_metric=metric, early_stopping_patience=1), CPU)
    history = trainer.fit(data, TRAIN, np.array([], dtype=np.int64), schema.ddi_adjacency,
                          on_epoch=lambda r: snapshots.update({r.epoch: {k: v.clone() for k, v in
                                                                         model.state_dict().items()}}))
    assert len(history.epochs) == 4 and not history.stopped_early
    assert history.best_epoch == 4 and history.best_score == -np.inf
    assert all(e.validation == {} for e in history.epochs)
    assert same_state(model.state_dict(), snapshots[4])
    assert history.to_json()["best_score"] is None


def test_a_nan_validation_loss_is_never_selected(
    data: EHRData, schema: DataSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = iter([0.5, float("nan"), 0.4])
    monkeypatch.setattr(Trainer, "validation_loss", lambda self, *a, **k: next(values))
    trainer = Trainer(logistic(schema), [BCELoss(BCELoss.Params(), schema)],
                      params(epochs=3, select_metric="loss"), CPU)
    history = trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)
    assert history.best_epoch == 3 and history.best_score == -0.4


def test_resume_with_select_metric_loss_matches_an_uninterrupted_run(
    data: EHRData, schema: DataSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, reference_history = run_training(data, schema, tmp_path / "reference.pt", select_metric="loss")
    with monkeypatch.context() as patch:
        interrupt_during_epoch(patch, 3)
        with pytest.raises(Interrupt):
            run_training(data, schema, tmp_path / "run.pt", select_metric="loss")
    resumed, resumed_history = run_training(data, schema, tmp_path / "run.pt", resume=True, select_metric="loss")
    assert without_seconds(resumed_history) == without_seconds(reference_history)
    assert all("loss" in e.validation for e in resumed_history.epochs)
    assert same_state(resumed.model.state_dict(), reference.model.state_dict())


# ---------------------------------------------------------------------------- named extras
class LogisticWithExtras(LogisticRegressionRecommender):
    """Provides ``doubled`` (twice the logits) and ``unused``; records what it was asked for."""

    @classmethod
    def extras_provided(cls, params: Params) -> frozenset[str]:
        return frozenset({"doubled", "unused", "halved"})

    def __init__(self, params: Params, schema: DataSchema, drop: str | None = None) -> None:
        super().__init__(params, schema)
        self.requests: list[tuple[str, ...] | None] = []
        self.drop = drop

    def forward(self, batch: PaddedBatch, extras: tuple[str, ...] = ()) -> Any:  # type: ignore[override]
        self.requests.append(extras)
        logits = super().forward(batch)
        if not extras:
            return logits
        values = {"doubled": 2 * logits, "halved": logits / 2, "unused": None}
        return ModelOutput(logits, {name: values[name] for name in extras if name != self.drop})


class DoubledBCE(Loss):
    """BCE on the model's ``doubled`` extra (so on ``2 * logits``), weight 0.5."""

    class Params(Params):
        weight: float = 0.5
        extra: str = "doubled"

    @classmethod
    def extras_needed(cls, params: Params) -> frozenset[str]:
        return frozenset({params.extra})

    def __init__(self, params: Params | None = None, schema: DataSchema | None = None) -> None:
        super().__init__(params, schema)
        self.combined_with: list[list[str]] = []

    def forward(self, logits: torch.Tensor, batch: PaddedBatch, extras: dict[str, Any]) -> torch.Tensor:
        scaled = extras[self.params.extra] / (2.0 if self.params.extra == "doubled" else 0.5)
        return BCELoss.forward(self, scaled, batch)  # type: ignore[arg-type]

    def combine(self, total: torch.Tensor, logits: torch.Tensor, batch: PaddedBatch,
                extras: dict[str, Any] | None = None) -> torch.Tensor:
        self.combined_with.append(sorted(extras or {}))
        return super().combine(total, logits, batch, extras)


def extras_model(schema: DataSchema, drop: str | None = None) -> LogisticWithExtras:
    seed_everything(0)
    return LogisticWithExtras(LogisticRegressionRecommender.Params(), schema, drop)


def test_the_model_is_asked_for_the_union_of_the_losses_extras_sorted(data: EHRData, schema: DataSchema) -> None:
    model = extras_model(schema)
    doubled, halved = DoubledBCE(), DoubledBCE(DoubledBCE.Params(extra="halved"))
    trainer = Trainer(model, [doubled, BCELoss(BCELoss.Params(), schema), halved], params(epochs=1), CPU)
    assert trainer.extras == ("doubled", "halved")
    trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)
    training_calls = [r for r in model.requests if r]
    assert len(training_calls) == 4 and set(training_calls) == {("doubled", "halved")}  # 28 patients / 8
    assert set(model.requests) == {("doubled", "halved"), ()}  # validation predicts logits only
    assert doubled.combined_with == halved.combined_with == [["doubled", "halved"]] * 4


def test_without_extras_the_model_is_called_plainly(data: EHRData, schema: DataSchema) -> None:
    model = extras_model(schema)
    trainer = Trainer(model, [BCELoss(BCELoss.Params(), schema)], params(epochs=1, select_metric="loss"), CPU)
    assert trainer.extras == ()
    trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)
    assert set(model.requests) == {()}


def test_extras_reach_the_loss_in_training_and_validation_by_hand(data: EHRData, schema: DataSchema) -> None:
    model = extras_model(schema)
    trainer = Trainer(model, [DoubledBCE(), BCELoss(BCELoss.Params(weight=0.25), schema)],
                      params(epochs=1, select_metric="loss"), CPU)
    batch = make_batch(data, VAL)
    with torch.no_grad():
        logits = model(batch)
    # DoubledBCE reads 2 * logits and undoes the doubling: 0.5 * bce + 0.25 * bce
    assert trainer.validation_loss(data, VAL) == pytest.approx(0.75 * bce_of(logits, batch), rel=1e-5)
    assert model.requests[-1] == ("doubled",)
    total = compute_loss(trainer.losses, logits, batch, {"doubled": 2 * logits})
    assert float(total) == pytest.approx(0.75 * bce_of(logits, batch), rel=1e-5)


def test_a_missing_extra_is_named(data: EHRData, schema: DataSchema) -> None:
    trainer = Trainer(extras_model(schema, drop="doubled"), [DoubledBCE()], params(epochs=1), CPU)
    with pytest.raises(ValueError, match=r"did not return the extras 'doubled' the losses need"):
        trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)


def test_run_model_accepts_a_tensor_or_a_model_output_and_refuses_others(data: EHRData, schema: DataSchema) -> None:
    batch = make_batch(data, np.arange(3))
    model = extras_model(schema)
    logits, extras = run_model(model, batch)
    assert extras == {} and logits.shape == (*batch.visit_mask.shape, 10)
    logits2, extras2 = run_model(model, batch, ("halved",))
    assert torch.equal(logits2, logits) and torch.equal(extras2["halved"], logits / 2)
    with pytest.raises(TypeError, match="returned a list"):
        run_model(lambda b: [1], batch)  # type: ignore[arg-type]


def test_extras_needed_is_the_sorted_union() -> None:
    assert extras_needed([BCELoss(), DoubledBCE(DoubledBCE.Params(extra="z")), DoubledBCE()]) == ("doubled", "z")
    assert extras_needed([BCELoss()]) == ()


# ---------------------------------------------------------------------------- resume
def run_training(
    data: EHRData, schema: DataSchema, checkpoint: Path, resume: bool = False, epochs: int = 4,
    extra: dict[str, Any] | None = None, device: torch.device = CPU, losses: list[Loss] | None = None,
    **trainer_settings: Any,
) -> tuple[Trainer, TrainingHistory]:
    """A fresh model + trainer built exactly as the experiment does (seed, then build), then fit."""
    model = gamenet(schema, seed=7)
    losses = losses if losses is not None else annealed_losses(schema)
    trainer = Trainer(model, losses, params(epochs=epochs, **trainer_settings), device, seed=7)
    history = trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency, checkpoint_path=checkpoint,
                          checkpoint_extra=extra if extra is not None else {"data_fingerprint": "abc", "config": "c"},
                          resume=resume)
    return trainer, history


@pytest.mark.parametrize("interrupted_in", [2, 4])
def test_resume_matches_an_uninterrupted_run(
    data: EHRData, schema: DataSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupted_in: int
) -> None:
    reference, reference_history = run_training(data, schema, tmp_path / "reference.pt")

    with monkeypatch.context() as patch:
        interrupt_during_epoch(patch, interrupted_in)
        with pytest.raises(Interrupt):
            run_training(data, schema, tmp_path / "run.pt")
    saved = load_checkpoint(tmp_path / "run.pt")
    assert len(saved["history"]["epochs"]) == interrupted_in - 1

    resumed, resumed_history = run_training(data, schema, tmp_path / "run.pt", resume=True)
    assert without_seconds(resumed_history) == without_seconds(reference_history)
    assert same_state(resumed.model.state_dict(), reference.model.state_dict())
    # the annealing schedule (temperature, draw generator) continued too
    assert same_state(resumed.losses[1].state_dict(), reference.losses[1].state_dict())
    assert same_state(load_checkpoint(tmp_path / "run.pt")["model"], load_checkpoint(tmp_path / "reference.pt")["model"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda_with_amp_matches_an_uninterrupted_run(
    data: EHRData, schema: DataSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GPU dropout draws from the CUDA generator and AMP has a loss scale: both must be restored
    cuda = torch.device("cuda")
    settings: dict[str, Any] = {"device": cuda, "amp": True}
    reference, reference_history = run_training(data, schema, tmp_path / "reference.pt",
                                                losses=[BCELoss(BCELoss.Params(), schema)], **settings)
    with monkeypatch.context() as patch:
        interrupt_during_epoch(patch, 3)
        with pytest.raises(Interrupt):
            run_training(data, schema, tmp_path / "run.pt", losses=[BCELoss(BCELoss.Params(), schema)], **settings)
    assert "cuda_rng" in load_checkpoint(tmp_path / "run.pt")
    resumed, resumed_history = run_training(data, schema, tmp_path / "run.pt", resume=True,
                                            losses=[BCELoss(BCELoss.Params(), schema)], **settings)
    assert [e.epoch for e in resumed_history.epochs] == [1, 2, 3, 4]
    assert resumed_history.best_epoch == reference_history.best_epoch
    assert resumed.scaler.get_scale() == reference.scaler.get_scale()
    torch.testing.assert_close(resumed.model.state_dict(), reference.model.state_dict())


def test_resume_keeps_the_early_stopping_count(
    data: EHRData, schema: DataSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    scripted_validation(monkeypatch, scores)
    _, reference = run_training(data, schema, tmp_path / "reference.pt", epochs=6, early_stopping_patience=3)
    assert len(reference.epochs) == 4 and reference.stopped_early

    with monkeypatch.context() as patch:
        interrupt_during_epoch(patch, 3)
        with pytest.raises(Interrupt):
            run_training(data, schema, tmp_path / "run.pt", epochs=6, early_stopping_patience=3)
    # the resumed trainer's validation continues the script where the killed one stopped
    scripted_validation(monkeypatch, scores[2:])
    _, resumed = run_training(data, schema, tmp_path / "run.pt", resume=True, epochs=6, early_stopping_patience=3)
    assert without_seconds(resumed) == without_seconds(reference)


def test_resuming_a_finished_early_stopped_run_trains_no_further(
    data: EHRData, schema: DataSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted_validation(monkeypatch, [0.5, 0.1, 0.1, 0.9, 0.9])
    first, history = run_training(data, schema, tmp_path / "run.pt", epochs=5, early_stopping_patience=2)
    assert len(history.epochs) == 3 and history.best_epoch == 1

    calls: list[int] = []
    monkeypatch.setattr(Trainer, "train_epoch", lambda self, *a, **k: calls.append(1) or 0.0)
    again, resumed = run_training(data, schema, tmp_path / "run.pt", resume=True, epochs=5, early_stopping_patience=2)
    assert calls == []
    assert without_seconds(resumed) == without_seconds(history)
    assert same_state(again.model.state_dict(), first.model.state_dict())  # the best (epoch 1) weights


def test_resume_without_a_checkpoint_starts_from_scratch(data: EHRData, schema: DataSchema, tmp_path: Path) -> None:
    _, reference = run_training(data, schema, tmp_path / "a.pt", epochs=2)
    _, fresh = run_training(data, schema, tmp_path / "b.pt", resume=True, epochs=2)
    assert without_seconds(fresh) == without_seconds(reference)


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        ({"data_fingerprint": "OTHER", "config": "c"}, "data fingerprint"),
        ({"data_fingerprint": "abc", "config": "OTHER"}, "config"),
    ],
)
def test_resume_refuses_a_checkpoint_of_other_data_or_settings(
    data: EHRData, schema: DataSchema, tmp_path: Path, extra: dict[str, str], what: str
) -> None:
    run_training(data, schema, tmp_path / "run.pt", epochs=1)
    with pytest.raises(ValueError, match=rf"cannot resume from .*run\.pt: the checkpoint's {what} differs.*new --out"):
        run_training(data, schema, tmp_path / "run.pt", resume=True, epochs=2, extra=extra)


@pytest.mark.parametrize(
    ("dropped", "lacking"),
    [
        (("config",), "config"),
        (("data_fingerprint", "config"), "config, data_fingerprint"),
        (("optimizer", "history"), "optimizer, history"),
        (("rng_seed",), "rng_seed"),
    ],
)
def test_resume_refuses_an_incomplete_checkpoint(
    data: EHRData, schema: DataSchema, tmp_path: Path, dropped: tuple[str, ...], lacking: str
) -> None:
    checkpoint = tmp_path / "run.pt"
    run_training(data, schema, checkpoint, epochs=1)
    state = load_checkpoint(checkpoint)
    save_atomic({k: v for k, v in state.items() if k not in dropped}, checkpoint)
    with pytest.raises(ValueError) as caught:
        run_training(data, schema, checkpoint, resume=True, epochs=2)
    assert str(caught.value) == (
        f"cannot resume from {checkpoint}: it has no {lacking} (not a checkpoint written by `medtoolkit train`); "
        "use a new --out directory or --overwrite"
    )


def test_resume_names_the_first_differing_setting_of_a_json_config(
    data: EHRData, schema: DataSchema, tmp_path: Path
) -> None:
    saved = {"data_fingerprint": "abc", "config": json.dumps({"model": {"hidden_dim": 8}, "seed": 1})}
    run_training(data, schema, tmp_path / "run.pt", epochs=1, extra=saved)
    other = {**saved, "config": json.dumps({"model": {"hidden_dim": 16}, "seed": 1})}
    with pytest.raises(ValueError) as caught:
        run_training(data, schema, tmp_path / "run.pt", resume=True, epochs=2, extra=other)
    assert str(caught.value) == (
        f"cannot resume from {tmp_path / 'run.pt'}: the checkpoint's config differs from this run's at "
        "model.hidden_dim (8 vs 16) "
        "(different data or settings); use a new --out directory"
    )


def test_checkpoint_is_written_every_epoch_with_its_metadata(data: EHRData, schema: DataSchema, tmp_path: Path) -> None:
    run_training(data, schema, tmp_path / "run.pt", epochs=2, extra={"data_fingerprint": "abc", "config": "c",
                                                                     "plugins": {"medtoolkit": "0.1.0"}})
    saved = load_checkpoint(tmp_path / "run.pt")
    assert saved["data_fingerprint"] == "abc" and saved["plugins"] == {"medtoolkit": "0.1.0"}
    assert len(saved["history"]["epochs"]) == 2
    assert {"model", "best_model", "optimizer", "losses", "rng_seed", "torch_rng"} <= saved.keys()


# ---------------------------------------------------------------------------- guards and options
def test_untrainable_model_skips_training(data: EHRData, schema: DataSchema, tmp_path: Path) -> None:
    model = PreviousVisitRecommender(PreviousVisitRecommender.Params(), schema)
    trainer = Trainer(model, [], params(epochs=5), CPU)
    assert trainer.optimizer is None
    history = trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency, checkpoint_path=tmp_path / "c.pt")
    assert history.epochs == [] and history.best_epoch is None
    assert not (tmp_path / "c.pt").exists()


def test_trainable_model_without_losses_is_refused(schema: DataSchema) -> None:
    with pytest.raises(ValueError, match="needs at least one loss.*'losses'"):
        Trainer(logistic(schema), [], params(), CPU)


class NaNLoss(Loss):
    def forward(self, logits: torch.Tensor, batch: PaddedBatch) -> torch.Tensor:
        return logits.sum() * float("nan")


def test_nan_loss_raises_a_clear_error(data: EHRData, schema: DataSchema) -> None:
    trainer = Trainer(logistic(schema), [NaNLoss()], params(), CPU)
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 0; lower trainer\.lr"):
        trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)


def grad_norm(model: Recommender) -> float:
    grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
    return float(torch.cat(grads).norm())


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_gradient_clipping_bounds_the_gradient_norm(data: EHRData, schema: DataSchema, clip: float | None) -> None:
    # the gradients of the last step stay on the parameters after the epoch
    trainer = Trainer(logistic(schema), [BCELoss(BCELoss.Params(), schema)], params(grad_clip=clip), CPU)
    trainer.train_epoch(data, TRAIN)
    norm = grad_norm(trainer.model)
    if clip is None:
        assert norm > 1e-2
    else:
        assert norm == pytest.approx(clip, rel=1e-3)


def test_amp_is_ignored_on_cpu(data: EHRData, schema: DataSchema) -> None:
    results = []
    for amp in (False, True):
        trainer = Trainer(logistic(schema), [BCELoss(BCELoss.Params(), schema)], params(amp=amp, epochs=2), CPU)
        assert trainer.use_amp is False and not trainer.scaler.is_enabled()
        trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)
        results.append(trainer.model.state_dict())
    assert same_state(*results)


def test_training_history_round_trips_through_json() -> None:
    history = TrainingHistory([EpochRecord(1, 0.5, 0.1, {"jaccard": 0.2})], best_epoch=1, best_score=0.2)
    assert TrainingHistory.from_json(history.to_json()) == history
    empty = TrainingHistory.from_json(TrainingHistory().to_json())
    assert empty.best_score == float("-inf") and empty.to_json()["best_score"] is None


def test_progress_log_lines_go_to_stderr(data: EHRData, schema: DataSchema, capsys: pytest.CaptureFixture[str]) -> None:
    trainer = Trainer(logistic(schema), [BCELoss(BCELoss.Params(), schema)], params(epochs=2, progress="log"), CPU)
    trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [line for line in captured.err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2 loss=") and "val: jaccard=" in lines[0]



# ---------------------------------------------------------------------------- tracked loss values
class EpochTracker(Loss):
    """An additive zero term that tracks the epoch it is in and the training steps it saw in it."""

    registered_name: ClassVar[str | None] = "epoch_tracker"

    class Params(Params):
        target: float = 0.25

    def __init__(self) -> None:
        super().__init__()
        self.resets = 0
        self.steps = 0

    def forward(self, logits: torch.Tensor, batch: PaddedBatch) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.steps += 1
        return logits.sum() * 0.0

    def reset_tracking(self) -> None:
        self.resets += 1
        self.steps = 0

    def tracked(self) -> dict[str, float]:
        return {"epoch": self.resets, "steps": self.steps}


def test_loss_label_is_the_position_and_the_registered_or_class_name() -> None:
    assert loss_label(2, EpochTracker()) == "2.epoch_tracker"
    assert loss_label(0, ConstantLoss(1.0)) == "0.ConstantLoss"


def test_tracked_values_land_in_each_epoch_record_with_the_target(data: EHRData, schema: DataSchema) -> None:
    tracker = EpochTracker()
    trainer = Trainer(logistic(schema), [BCELoss(BCELoss.Params(), schema), tracker], params(epochs=3), CPU)
    history = trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)
    # reset before each of the 3 epochs; 28 training patients in batches of 8: 4 steps per epoch;
    # BCE tracks nothing and is left out
    assert tracker.resets == 3
    assert [e.losses for e in history.epochs] == [
        {"1.epoch_tracker": {"epoch": float(k), "steps": 4.0, "target": 0.25}} for k in (1, 2, 3)
    ]
    assert history.to_json()["epochs"][1]["losses"] == {"1.epoch_tracker": {"epoch": 2.0, "steps": 4.0,
                                                                            "target": 0.25}}


def test_tracked_values_are_appended_to_the_log_line(
    data: EHRData, schema: DataSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = Trainer(logistic(schema), [BCELoss(BCELoss.Params(), schema), EpochTracker()],
                      params(epochs=2, progress="log"), CPU)
    trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    # the constant target is left out of the line
    assert [line.split(" | ", 1)[1] for line in lines] == ["1.epoch_tracker: epoch=1 steps=4",
                                                          "1.epoch_tracker: epoch=2 steps=4"]


def test_format_tracked_groups_values_per_loss_term() -> None:
    assert format_tracked({}) == ""
    assert format_tracked({"1.ddi": {"ddi_rate": 0.071234, "temperature": 1.7, "target": 0.06},
                           "2.x": {"target": 0.5}, "3.y": {"beta": 1.0}}) == (
        "1.ddi: ddi_rate=0.07123 temperature=1.7; 3.y: beta=1"
    )


def test_ddi_loss_values_are_checkpointed_and_resumed(
    data: EHRData, schema: DataSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, reference = run_training(data, schema, tmp_path / "reference.pt", epochs=3)
    label = loss_label(1, DDILoss(DDILoss.Params(), schema))
    tracked = [e.losses for e in reference.epochs]
    assert all(set(values) == {label} for values in tracked)
    assert all(set(values[label]) == {"ddi_rate", "switched_share", "temperature", "target"} for values in tracked)
    # the temperature used in epoch k is T0 * decay^(k-1); the target is the loss's
    assert [values[label]["temperature"] for values in tracked] == pytest.approx([2.0, 1.7, 1.445])
    assert {values[label]["target"] for values in tracked} == {0.0}
    assert load_checkpoint(tmp_path / "reference.pt")["history"]["epochs"][2]["losses"] == tracked[2]

    with monkeypatch.context() as patch:
        interrupt_during_epoch(patch, 3)
        with pytest.raises(Interrupt):
            run_training(data, schema, tmp_path / "run.pt", epochs=3)
    _, resumed = run_training(data, schema, tmp_path / "run.pt", resume=True, epochs=3)
    assert [e.losses for e in resumed.epochs] == tracked


def test_a_checkpoint_written_before_tracked_values_existed_resumes(
    data: EHRData, schema: DataSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        interrupt_during_epoch(patch, 3)
        with pytest.raises(Interrupt):
            run_training(data, schema, tmp_path / "run.pt", epochs=3)
    state = load_checkpoint(tmp_path / "run.pt")
    for record in state["history"]["epochs"]:
        del record["losses"]
    save_atomic(state, tmp_path / "run.pt")
    _, resumed = run_training(data, schema, tmp_path / "run.pt", resume=True, epochs=3)
    assert [bool(e.losses) for e in resumed.epochs] == [False, False, True]


def test_an_older_history_without_loss_values_loads() -> None:
    payload = {"epochs": [{"epoch": 1, "train_loss": 0.5, "seconds": 0.1, "validation": {"jaccard": 0.2}}],
               "best_epoch": 1, "best_score": 0.2, "stopped_early": False}
    history = TrainingHistory.from_json(payload)
    assert history.epochs == [EpochRecord(1, 0.5, 0.1, {"jaccard": 0.2}, {})]
    assert history.to_json()["epochs"][0]["losses"] == {}
    with_values = TrainingHistory([EpochRecord(1, 0.5, 0.1, {}, {"0.ddi": {"ddi_rate": 0.07}})], best_epoch=1)
    assert TrainingHistory.from_json(json.loads(json.dumps(with_values.to_json()))) == with_values


def test_cosine_learning_rate_schedule_by_hand() -> None:
    from medtoolkit.config import TrainerParams
    from medtoolkit.training.trainer import epoch_learning_rate

    params = TrainerParams(lr=0.01, epochs=4, lr_schedule="cosine")
    # lr (1 + cos(pi e / 4)) / 2 for e = 0..3
    assert [round(epoch_learning_rate(params, e), 6) for e in range(4)] == [0.01, 0.008536, 0.005, 0.001464]
    constant = TrainerParams(lr=0.01, epochs=4)
    assert constant.lr_schedule == "constant"
    assert all(epoch_learning_rate(constant, e) == 0.01 for e in range(4))


def test_cosine_schedule_sets_each_epochs_learning_rate(data: EHRData, schema: DataSchema) -> None:
    from medtoolkit.training.trainer import epoch_learning_rate

    seen: list[float] = []
    trainer = Trainer(logistic(schema), [BCELoss(BCELoss.Params(), schema)],
                      params(epochs=3, lr=0.02, lr_schedule="cosine"), CPU)
    trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency,
                on_epoch=lambda record: seen.append(trainer.optimizer.param_groups[0]["lr"]))
    assert seen == pytest.approx([epoch_learning_rate(trainer.params, e) for e in range(3)])
    assert seen[0] == 0.02 and seen[2] < seen[1] < seen[0]


def test_a_three_argument_combine_still_works() -> None:
    # plugins written before extras existed override combine(total, logits, batch)
    class OldStyle(BCELoss):
        def combine(self, total: torch.Tensor, logits: torch.Tensor, batch: PaddedBatch) -> torch.Tensor:
            return total + 2.0 * self(logits, batch)

    data = fake_ehr(n_patients=4)
    schema = fake_schema(data)
    batch = make_batch(data, np.arange(4))
    logits = torch.zeros(batch.batch_size, batch.max_visits, schema.n_drugs)
    plain = BCELoss(BCELoss.Params(), schema)(logits, batch)
    total = compute_loss([OldStyle(BCELoss.Params(), schema)], logits, batch, extras={"unused": 1})
    assert torch.allclose(total, 2.0 * plain)


def test_prefetching_batches_in_a_thread_trains_exactly_as_cutting_them_in_the_loop(
        data: EHRData, schema: DataSchema) -> None:
    weights = []
    for depth in (0, 2):
        model = gamenet(schema, seed=4)
        trainer = Trainer(model, annealed_losses(schema), params(prefetch=depth), CPU, seed=9)
        losses = [trainer.train_epoch(data, TRAIN) for _ in range(2)]
        weights.append((losses, {k: v.clone() for k, v in model.state_dict().items()}))
    assert weights[0][0] == weights[1][0]
    assert same_state(weights[0][1], weights[1][1])


# ---------------------------------------------------------------------------- weight average (ema_decay)
def test_ema_validates_and_selects_the_averaged_weights(data: EHRData, schema: DataSchema) -> None:
    trainer = Trainer(gamenet(schema, seed=3), [BCELoss(BCELoss.Params(), schema)], params(epochs=3, ema_decay=0.8),
                      CPU, seed=3)
    seen: list[tuple[dict[str, float], dict[str, float], float, float]] = []

    def check(record: EpochRecord) -> None:  # called with the raw weights in the model
        raw_loss = trainer.validation_loss(data, VAL)
        with trainer.averaged_weights():
            averaged = trainer.validate(data, VAL, schema.ddi_adjacency)
            averaged_loss = trainer.validation_loss(data, VAL)
        seen.append((record.validation, averaged, averaged_loss, raw_loss))

    history = trainer.fit(data, TRAIN, VAL, schema.ddi_adjacency, on_epoch=check)
    assert [recorded for recorded, _, _, _ in seen] == [averaged for _, averaged, _, _ in seen]
    assert all(abs(averaged - raw) > 1e-6 for _, _, averaged, raw in seen)  # the two weight sets differ
    best = history.epochs[history.best_epoch - 1].validation
    assert trainer.validate(data, VAL, schema.ddi_adjacency) == best  # the kept weights are the selected average


def test_ema_without_validation_keeps_the_last_averaged_weights(data: EHRData, schema: DataSchema) -> None:
    trainer = Trainer(gamenet(schema, seed=3), [BCELoss(BCELoss.Params(), schema)], params(epochs=2, ema_decay=0.9),
                      CPU, seed=3)
    trainer.fit(data, TRAIN, np.arange(0), schema.ddi_adjacency)
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    assert trainer.weight_average is not None and trainer.weight_average.steps == 2 * 4  # 28 patients / 8
    assert all(torch.equal(p.detach(), a) for p, a in zip(trainable, trainer.weight_average.averages))


def test_resume_with_ema_matches_an_uninterrupted_run(
    data: EHRData, schema: DataSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, reference_history = run_training(data, schema, tmp_path / "reference.pt", ema_decay=0.7)
    with monkeypatch.context() as patch:
        interrupt_during_epoch(patch, 3)
        with pytest.raises(Interrupt):
            run_training(data, schema, tmp_path / "run.pt", ema_decay=0.7)
    assert load_checkpoint(tmp_path / "run.pt")["weight_average"]["steps"] == 2 * 4
    resumed, resumed_history = run_training(data, schema, tmp_path / "run.pt", resume=True, ema_decay=0.7)
    assert without_seconds(resumed_history) == without_seconds(reference_history)
    assert same_state(resumed.model.state_dict(), reference.model.state_dict())
    with pytest.raises(ValueError, match="'weight_average' entry does not fit this run .*decay 0.7, this run uses 0.6"):
        run_training(data, schema, tmp_path / "run.pt", resume=True, ema_decay=0.6)
