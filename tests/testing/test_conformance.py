"""Tests of the public test kit: check_component, fixtures, re-exports."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from torch import nn

import medtoolkit.testing as kit
from medtoolkit.components.base import Encoder, Loss, Recommender
from medtoolkit.components.encoders.gru import GRUEncoder
from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.losses.ddi import DDILoss
from medtoolkit.components.losses.margin import MultiLabelMarginLoss
from medtoolkit.components.memories.gcn import GCNMemory
from medtoolkit.components.params import Node, Params
from medtoolkit.components.recommenders.gamenet import GAMENet
from medtoolkit.components.recommenders.logistic_regression import LogisticRegressionRecommender
from medtoolkit.components.recommenders.previous_visit import PreviousVisitRecommender
from medtoolkit.testing import check_component

BUILTINS = [
    (GRUEncoder, None),
    (GCNMemory, None),
    (GAMENet, GAMENet.Params(encoder=Node.of(GRUEncoder), memory=Node.of(GCNMemory))),
    (LogisticRegressionRecommender, None),
    (PreviousVisitRecommender, None),
    (BCELoss, None),
    (MultiLabelMarginLoss, None),
    (DDILoss, None),
]
ALL_CHECKS = ["params", "shapes", "state_dict", "device", "determinism", "causality", "gradients"]


@pytest.mark.parametrize(("component", "params"), BUILTINS, ids=[c.__name__ for c, _ in BUILTINS])
def test_every_builtin_conforms(component: type, params: BaseModel | None) -> None:
    passed = check_component(component, params)
    expected = [c for c in ALL_CHECKS if c != "causality" or component.kind != "loss"]
    assert passed == expected


def test_explicit_cpu_device_and_custom_data() -> None:
    data = kit.fake_ehr(n_patients=5, n_drugs=7, max_visits=3, seed=4)
    assert "device" in check_component(LogisticRegressionRecommender, device="cpu", data=data)


# ---------------------------------------------------------------- deliberately broken toys
class _ToyBase(Recommender):
    class Params(Params):
        pass

    def __init__(self, params: Params | None = None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.scale = nn.Parameter(torch.ones(1))
        self.codes = nn.EmbeddingBag(schema.vocab_size("diagnoses") + 1, schema.n_drugs, padding_idx=0)

    def current(self, batch) -> torch.Tensor:  # noqa: ANN001
        b, t, width = batch.codes["diagnoses"].shape
        out = self.codes(batch.codes["diagnoses"].reshape(b * t, width))
        return out.reshape(b, t, -1) * self.scale


class ReadsCurrentMedications(_ToyBase):
    """Leaks the target: logits depend on the medications of the same visit."""

    def forward(self, batch):  # noqa: ANN001, ANN201
        return self.current(batch) + 5 * batch.medications


class ReadsFutureVisits(_ToyBase):
    """Leaks the future: a reverse cumulative sum over visits."""

    def forward(self, batch):  # noqa: ANN001, ANN201
        return self.current(batch).flip(1).cumsum(1).flip(1)


class CausalToy(_ToyBase):
    """Reads codes up to t and medications before t: conforms."""

    def forward(self, batch):  # noqa: ANN001, ANN201
        previous = torch.cat([torch.zeros_like(batch.medications[:, :1]), batch.medications[:, :-1]], 1)
        return self.current(batch).cumsum(1) + previous


def test_causal_toy_passes() -> None:
    assert "causality" in check_component(CausalToy)


@pytest.mark.parametrize(
    ("toy", "message"),
    [
        (ReadsCurrentMedications, r"\[causality\] changing the medications of visit 0 changed outputs at visits <= 0"),
        (ReadsFutureVisits, r"\[causality\] changing the codes of visit 1 changed outputs at visits <= 0"),
    ],
)
def test_non_causal_recommenders_fail(toy: type, message: str) -> None:
    with pytest.raises(AssertionError, match=rf"check_component\({toy.__name__}\) {message}"):
        check_component(toy)


class LooseTensor(_ToyBase):
    """Keeps a constant as a plain attribute: it would not follow .to(device)."""

    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.graph = torch.ones(schema.n_drugs)

    def forward(self, batch):  # noqa: ANN001, ANN201
        return self.current(batch) * self.graph


class WrongShape(_ToyBase):
    def forward(self, batch):  # noqa: ANN001, ANN201
        return self.current(batch)[..., :-1]


class UnusedParameter(CausalToy):
    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.forgotten = nn.Linear(3, 3)


class UnseededInit(CausalToy):
    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        with torch.no_grad():
            self.scale.fill_(float(np.random.default_rng().random()) + 0.5)


class LenientParams(CausalToy):
    class Params(BaseModel):  # extra keys are silently ignored
        hidden: int = 3


class NotScalarLoss(Loss):
    class Params(Params):
        weight: float = 1.0

    def forward(self, logits, batch):  # noqa: ANN001, ANN201
        return (logits**2).mean(-1)


class LeakyEncoder(Encoder):
    """Pools over all visits (a bidirectional summary): non-causal."""

    class Params(Params):
        pass

    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.table = nn.Embedding(schema.vocab_size("diagnoses") + 1, 4, padding_idx=0)

    @property
    def output_dim(self) -> int:
        return 4

    def forward(self, batch):  # noqa: ANN001, ANN201
        vectors = self.table(batch.codes["diagnoses"]).sum(2)
        return vectors + vectors.mean(1, keepdim=True)


@pytest.mark.parametrize(
    ("toy", "check", "fragment"),
    [
        (LooseTensor, "device", "not registered buffers"),
        (WrongShape, "shapes", "expected output shape"),
        (UnusedParameter, "gradients", "forgotten.weight"),
        (UnseededInit, "determinism", "same seed, different initial 'scale'"),
        (LenientParams, "params", "unknown keys must be rejected"),
        (NotScalarLoss, "shapes", "a loss must return a scalar"),
        (LeakyEncoder, "causality", "changing the codes of visit 1"),
    ],
)
def test_broken_components_fail_with_the_check_named(toy: type, check: str, fragment: str) -> None:
    with pytest.raises(AssertionError) as info:
        check_component(toy)
    assert f"check_component({toy.__name__}) [{check}]" in str(info.value)
    assert fragment in str(info.value)


# ---------------------------------------------------------------- fixtures & package
def test_pytest_plugin_fixtures(fake_ehr_data, fake_schema, fake_batch) -> None:  # noqa: ANN001
    assert fake_ehr_data.n_patients == 12
    assert fake_schema.n_drugs == fake_ehr_data.n_drugs == fake_batch.medications.shape[-1]
    assert fake_batch.visit_mask.shape[0] == 12 and fake_batch.n_visits == fake_ehr_data.n_visits
    assert fake_schema.cooccurrence_adjacency is not None


def test_package_reexports() -> None:
    assert set(kit.__all__) == {"check_component", "fake_batch", "fake_ehr", "fake_schema"}
    assert kit.check_component is check_component
