"""Batch items (task -> recommender), the visit-embedding index and the package-scorer hooks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from medtoolkit.components.base import Recommender
from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.params import Node
from medtoolkit.components.recommenders.logistic_regression import LogisticRegressionRecommender
from medtoolkit.components.requirements import task_errors
from medtoolkit.config import TrainerParams
from medtoolkit.data.batching import PaddedBatch, make_batch
from medtoolkit.data.ehr import DIAGNOSES, EHRData
from medtoolkit.tasks.medication import MedicationRecommendationTask, visits_of
from medtoolkit.tasks.package_task import PackageRecommendationTask
from medtoolkit.testing import check_component, fake_ehr, fake_schema
from medtoolkit.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


class Movable:
    """An item with ``.to`` (like a torch_geometric Batch)."""

    def __init__(self, where: str = "nowhere") -> None:
        self.where = where

    def to(self, device: Any, non_blocking: bool = False) -> "Movable":
        return Movable(str(device))


class ItemReader(LogisticRegressionRecommender):
    """Logistic regression that needs the item ``"tag"`` and records every batch's items."""

    registered_name = "item_reader"

    @classmethod
    def batch_items_needed(cls, params: Any) -> frozenset[str]:
        return frozenset({"tag"})

    def __init__(self, params: Any = None, schema: Any = None) -> None:
        super().__init__(params, schema)
        self.seen: list[tuple[int, int]] = []  # (tag, real visits) per batch

    def forward(self, batch: PaddedBatch) -> torch.Tensor:
        if "tag" not in batch.items:
            raise KeyError("batch item 'tag' missing")
        self.seen.append((int(batch.items["tag"]), batch.n_visits))
        return super().forward(batch)


class DiagnosisEmbedder(LogisticRegressionRecommender):
    """Visit embedding = the visit's diagnosis multi-hot (hand-checkable)."""

    def visit_embedding(self, batch: PaddedBatch) -> torch.Tensor:
        codes = batch.codes[DIAGNOSES]
        hot = torch.zeros(*codes.shape[:2], self.schema.vocab_size(DIAGNOSES) + 1)
        hot.scatter_(2, codes, 1.0)
        return hot[..., 1:]


def tag(batch: PaddedBatch) -> PaddedBatch:
    """A collate adding the number of real visits as the item ``"tag"``."""
    return PaddedBatch(batch.codes, batch.visit_mask, batch.medications, batch.patient_index, batch.hospital,
                       {**batch.items, "tag": torch.tensor(batch.n_visits)})


@pytest.fixture(scope="module")
def data() -> EHRData:
    return fake_ehr(n_patients=12, n_diagnoses=6, n_procedures=4, n_drugs=5, max_visits=3, seed=2)


def test_items_default_empty_and_move_with_the_batch(data: EHRData) -> None:
    batch = make_batch(data, [0, 1])
    assert batch.items == {}
    batch.items.update({"t": torch.ones(2), "g": Movable(), "plain": [1, 2]})
    moved = batch.to("cpu")
    assert isinstance(moved.items["t"], torch.Tensor) and moved.items["g"].where == "cpu"
    assert moved.items["plain"] == [1, 2] and batch.items["g"].where == "nowhere"
    assert make_batch(data, [0]).items == {}  # a fresh dict per batch


def test_recommender_hook_defaults(data: EHRData) -> None:
    model = LogisticRegressionRecommender(schema=fake_schema(data))
    batch = make_batch(data, [0, 1])
    assert Recommender.batch_items_needed(model.params) == frozenset()
    assert model.visit_embedding(batch) is None and model.neighbour_index() is None
    assert Recommender.scores_packages is False
    with pytest.raises(NotImplementedError, match="does not score packages"):
        model.score_packages(batch, None, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="visit_embedding returned None"):
        model.fit_neighbour_index(data, np.array([0, 1]))


def test_fit_neighbour_index_embeds_every_training_visit_in_order(data: EHRData) -> None:
    model = DiagnosisEmbedder(schema=fake_schema(data))
    patients = np.array([5, 2, 7])
    model.fit_neighbour_index(data, patients, batch_size=2)
    keys, visits = model.neighbour_index()
    expected_visits = visits_of(data, patients)
    np.testing.assert_array_equal(visits.numpy(), expected_visits)
    np.testing.assert_array_equal(keys.numpy(), data.multi_hot(DIAGNOSES, expected_visits))
    assert keys.dtype == torch.float32 and visits.dtype == torch.int64
    assert {"neighbour_keys", "neighbour_visits"} <= set(model.state_dict())
    assert model.training  # the mode is restored


def test_trainer_collates_training_and_validation_batches(data: EHRData) -> None:
    schema = fake_schema(data)
    model = ItemReader(schema=schema)
    trainer = Trainer(model, [BCELoss(BCELoss.Params(), schema)],
                      TrainerParams(epochs=1, batch_size=4, progress="none", select_metric="loss"), CPU, collate=tag)
    trainer.train_epoch(data, np.arange(8))
    # two training batches of 4 patients, each tagged with its own visit count
    assert [tag for tag, _ in model.seen] == [n for _, n in model.seen]
    assert len(model.seen) == 2 and sum(n for _, n in model.seen) == int(data.visits_per_patient[:8].sum())
    model.seen.clear()
    trainer.validation_loss(data, np.arange(8, 12), batch_size=4)
    assert [tag for tag, _ in model.seen] == [int(data.visits_per_patient[8:12].sum())]


def test_validate_refuses_items_the_task_lacks_and_names_both() -> None:
    errors = task_errors(Node.of(ItemReader), Node.of(MedicationRecommendationTask, protocol="random"))
    task_name = Node.of(MedicationRecommendationTask).type  # the registered name once the builtins are loaded
    assert [(e.path, e.message) for e in errors] == [
        ("model", f"recommender 'item_reader' needs batch items 'tag' that task {task_name!r} does not "
                  f"provide (it provides: none)"),
    ]
    errors = task_errors(Node.of(ItemReader), Node.of(PackageRecommendationTask))
    assert "(it provides: 'package_graphs')" in errors[0].message
    assert task_errors(Node.of(LogisticRegressionRecommender), Node.of(PackageRecommendationTask)) == []


def test_conformance_needs_collate_for_batch_items(data: EHRData) -> None:
    with pytest.raises(AssertionError, match=r"\[batch_items\] ItemReader needs batch items \['tag'\]: pass collate="):
        check_component(ItemReader, data=data, device="cpu")
    passed = check_component(ItemReader, data=data, device="cpu", collate=tag)
    assert "batch_items" in passed and "causality" in passed


def test_require_extra_returns_the_extra_or_names_loss_extra_and_what_was_given() -> None:
    from medtoolkit.components.base import require_extra

    assert require_extra({"scores": 3}, "scores", "my_loss") == 3
    with pytest.raises(KeyError) as caught:
        require_extra({"other": 1}, "scores", "my_loss")
    assert caught.value.args[0] == "loss 'my_loss' needs the model extra 'scores', got ['other']"
    with pytest.raises(KeyError, match=r"got \[\]"):
        require_extra(None, "scores", "my_loss")
