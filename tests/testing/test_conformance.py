"""Tests of the public test kit: check_component, fixtures, re-exports."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from torch import nn

import medtoolkit.testing as kit
from medtoolkit.components.adapters import FinetuneAdapter, FinetuneFreezeAdapter, LoRAAdapter
from medtoolkit.components.base import Adapter, DrugEncoder, Encoder, Loss, ModelOutput, Recommender
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
from medtoolkit.testing.conformance import loose_tensors

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
        (LooseTensor, "device", "graph: Tensor (15,) is not a registered buffer/parameter (at construction)"),
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


# ---------------------------------------------------------------- tensors held outside parameters/buffers
class _HeldScale(CausalToy):
    """A causal toy whose forward multiplies by ``self.held()`` ([n_drugs] ones)."""

    def held(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch):  # noqa: ANN001, ANN201
        return super().forward(batch) * self.held()


class HoldsGraphBatch(_HeldScale):
    """Keeps a torch_geometric Batch as an attribute: its tensors stay on the CPU."""

    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        from torch_geometric.data import Batch, Data

        graph = Data(x=torch.ones(schema.n_drugs, 1), edge_index=torch.tensor([[0, 1], [1, 0]]))
        self.graph = Batch.from_data_list([graph])

    def held(self) -> torch.Tensor:
        return self.graph.x[:, 0]


class HoldsTensorDict(_HeldScale):
    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.constants = {"ones": torch.ones(schema.n_drugs)}

    def held(self) -> torch.Tensor:
        return self.constants["ones"]


class HoldsTensorList(_HeldScale):
    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.constants = [torch.zeros(1), (torch.ones(schema.n_drugs),)]

    def held(self) -> torch.Tensor:
        return self.constants[1][0]


class CachesLazily(_HeldScale):
    """Clean at construction; the first forward caches a tensor in a dict."""

    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.cache: dict[str, torch.Tensor] = {}

    def held(self) -> torch.Tensor:
        if "ones" not in self.cache:
            self.cache["ones"] = torch.ones(self.schema.n_drugs)
        return self.cache["ones"]


class AliasesBuffer(_HeldScale):
    """A registered buffer, but read through a plain alias that .to() would leave behind."""

    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.register_buffer("ones", torch.ones(schema.n_drugs), persistent=False)
        self.lookup = {"ones": self.ones}

    def held(self) -> torch.Tensor:
        return self.lookup["ones"]


class UsesBuffers(_HeldScale):
    """The same constants as registered (non-persistent) buffers: conforms."""

    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        from torch_geometric.data import Batch, Data

        graph = Batch.from_data_list([Data(x=torch.ones(schema.n_drugs, 1), edge_index=torch.tensor([[0, 1], [1, 0]]))])
        self.register_buffer("x", graph.x, persistent=False)
        self.register_buffer("edge_index", graph.edge_index, persistent=False)
        self.n_graphs = int(graph.num_graphs)  # plain numbers are fine

    def held(self) -> torch.Tensor:
        return self.x[:, 0]


@pytest.mark.parametrize(
    ("toy", "path"),
    [
        (HoldsGraphBatch, "graph._store['x']: Tensor (15, 1) is not a registered buffer/parameter (at construction)"),
        (HoldsTensorDict, "constants['ones']: Tensor (15,) is not a registered buffer/parameter (at construction)"),
        (HoldsTensorList, "constants[1][0]: Tensor (15,) is not a registered buffer/parameter (at construction)"),
        (CachesLazily, "cache['ones']: Tensor (15,) is not a registered buffer/parameter (after an eval forward)"),
        (AliasesBuffer, "lookup['ones']: aliases buffer 'ones' (.to() replaces buffers; it goes stale)"),
    ],
)
def test_tensors_outside_registered_buffers_fail_the_device_check(toy: type, path: str) -> None:
    pytest.importorskip("torch_geometric")
    with pytest.raises(AssertionError) as info:
        check_component(toy)
    message = str(info.value)
    assert message.startswith(f"check_component({toy.__name__}) [device] {toy.__name__} holds tensors")
    assert "not registered buffers/parameters" in message
    assert path in message


def test_graph_batch_findings_name_every_tensor() -> None:
    pytest.importorskip("torch_geometric")
    findings = loose_tensors(HoldsGraphBatch(None, kit.fake_schema()))
    paths = sorted(f.split(":")[0] for f in findings)
    # x [15, 1], edge_index [2, 2], batch [15], ptr [2] and the batch's slice/increment tables
    expected = {"graph._store['x']", "graph._store['edge_index']", "graph._store['batch']", "graph._store['ptr']"}
    assert expected <= set(paths)
    assert any(p.startswith("graph._store._slice_dict[") for p in paths)


def test_module_in_a_plain_list_and_nested_submodule_paths() -> None:
    class Inner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cache = {"k": [torch.zeros(2)]}

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()
            self.heads = [nn.Linear(2, 2)]
            self.registered = [self.inner]  # a registered submodule referenced again: fine
            self.weights = [self.inner]

    findings = loose_tensors(Outer())
    assert findings == [
        "heads[0]: Linear module is not a registered submodule",
        "inner.cache['k'][0]: Tensor (2,) is not a registered buffer/parameter",
    ]


def test_same_module_with_buffers_passes() -> None:
    pytest.importorskip("torch_geometric")
    assert loose_tensors(UsesBuffers(None, kit.fake_schema())) == []
    assert "device" in check_component(UsesBuffers)


def test_scan_is_bounded_on_cycles() -> None:
    module = nn.Linear(2, 2)
    loop: list = []
    loop.append(loop)
    module.loop = loop  # a self-referencing list must not recurse forever
    module.deep = [[[[[[[[torch.ones(1)]]]]]]]]  # deeper than SCAN_DEPTH: not seen (documented)
    assert loose_tensors(module) == []


# ---------------------------------------------------------------- drug encoders
class ToyDrugEncoder(DrugEncoder):
    """``[n_drugs, 4]``: a learned table mixed with a fixed drug feature held as a buffer."""

    class Params(Params):
        dim: int = 4

    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.table = nn.Parameter(torch.randn(schema.n_drugs, self.params.dim))
        self.mix = nn.Linear(1, self.params.dim)
        degree = torch.as_tensor(schema.ddi_adjacency, dtype=torch.float32).sum(1, keepdim=True)
        self.register_buffer("degree", degree, persistent=False)

    @property
    def output_dim(self) -> int:
        return self.params.dim

    def forward(self) -> torch.Tensor:
        return self.table + self.mix(self.degree)


class DrugEncoderWrongRows(ToyDrugEncoder):
    def forward(self) -> torch.Tensor:
        return super().forward()[:-1]


class DrugEncoderHoldingGraph(ToyDrugEncoder):
    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.features = {"degree": self.degree.clone()}


def test_toy_drug_encoder_passes_every_check_but_causality() -> None:
    assert check_component(ToyDrugEncoder) == ["params", "shapes", "state_dict", "device", "determinism", "gradients"]
    assert check_component(ToyDrugEncoder, ToyDrugEncoder.Params(dim=3), device="cpu")[-1] == "gradients"


@pytest.mark.parametrize(
    ("toy", "check", "fragment"),
    [
        (DrugEncoderWrongRows, "shapes", "expected output shape (15, 4) ([n_drugs, output_dim]), got (14, 4)"),
        (DrugEncoderHoldingGraph, "device", "features['degree']: Tensor (15, 1) is not a registered buffer"),
    ],
)
def test_broken_drug_encoders_fail(toy: type, check: str, fragment: str) -> None:
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
    assert {"check_component", "fake_batch", "fake_ehr", "fake_schema"} <= set(kit.__all__)
    assert all(hasattr(kit, name) for name in kit.__all__)
    assert kit.check_component is check_component


# ---------------------------------------------------------------- the current visit's medication codes
class GRUReadingMedications(GRUEncoder):
    """The core gru with its refusal of ``medications`` lifted: what a leaking plugin would be."""

    class Params(GRUEncoder.Params):
        vocabularies: tuple[str, ...] = ("diagnoses", "procedures")  # a plain tuple: no InputVocabularies check


def test_gru_refuses_medications_as_an_input_vocabulary() -> None:
    with pytest.raises(ValueError, match="'medications' cannot be an input vocabulary"):
        GRUEncoder.Params(vocabularies=("diagnoses", "medications"))


def test_an_encoder_reading_current_medication_codes_fails() -> None:
    params = GRUReadingMedications.Params(vocabularies=("diagnoses", "procedures", "medications"))
    with pytest.raises(AssertionError, match=r"check_component\(GRUReadingMedications\) \[causality\] changing the "
                                             r"medication "
                                             r"codes of visit 0 \(batch.codes\['medications'\]\) changed outputs at "
                                             r"visits <= 0: the current visit's medication codes are its target"):
        check_component(GRUReadingMedications, params)


class ReadsCurrentMedicationCodes(_ToyBase):
    """Leaks the target through the codes: logits depend on the medication codes of the same visit."""

    def __init__(self, params: Params | None = None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.drugs = nn.EmbeddingBag(schema.n_drugs + 1, schema.n_drugs, padding_idx=0)

    def forward(self, batch):  # noqa: ANN001, ANN201
        b, t, width = batch.codes["medications"].shape
        leak = self.drugs(batch.codes["medications"].reshape(b * t, width)).reshape(b, t, -1)
        return self.current(batch) + leak


def test_a_recommender_reading_current_medication_codes_fails() -> None:
    with pytest.raises(AssertionError, match=r"\[causality\] changing the medication codes of visit 0"):
        check_component(ReadsCurrentMedicationCodes)


class ReadsPreviousMedicationCodes(ReadsCurrentMedicationCodes):
    """Reads the medication codes of visits < t only: conforms."""

    def forward(self, batch):  # noqa: ANN001, ANN201
        b, t, width = batch.codes["medications"].shape
        history = self.drugs(batch.codes["medications"].reshape(b * t, width)).reshape(b, t, -1)
        previous = torch.cat([torch.zeros_like(history[:, :1]), history[:, :-1]], 1)
        return self.current(batch).cumsum(1) + previous


def test_previous_medication_codes_may_be_read() -> None:
    assert "causality" in check_component(ReadsPreviousMedicationCodes)


# ---------------------------------------------------------------- statistics through fake_schema
class NeedsStatistics(CausalToy):
    """Weights its logits by training co-occurrence counts read from the schema."""

    def __init__(self, params: Params | None = None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        from medtoolkit.components.statistics import code_counts

        counts = schema.require_statistic(code_counts("medications"), "recommender 'needs_statistics'")
        self.register_buffer("prior", torch.as_tensor(np.log1p(counts)))

    def forward(self, batch):  # noqa: ANN001, ANN201
        return super().forward(batch) + self.prior


def test_components_requiring_statistics_conform_on_the_fake_schema() -> None:
    assert "causality" in check_component(NeedsStatistics)


class LogisticRegressionReadingMedications(LogisticRegressionRecommender):
    """Logistic regression with its refusal of ``medications`` lifted; its weights start at zero."""

    class Params(LogisticRegressionRecommender.Params):
        vocabularies: tuple[str, ...] = ("diagnoses", "procedures")  # a plain tuple: no InputVocabularies check


def test_a_leak_behind_zero_initial_weights_is_still_found() -> None:
    """The causality check nudges a copy's parameters, so an output that starts constant can move."""
    params = LogisticRegressionReadingMedications.Params(vocabularies=("diagnoses", "medications"))
    with pytest.raises(AssertionError, match=r"\[causality\] changing the medication codes of visit 0"):
        check_component(LogisticRegressionReadingMedications, params)


# ---------------------------------------------------------------- adapters
ADAPTER_CHECKS = ["params", "attach", "trainable", "shapes", "state_dict", "device", "determinism", "causality",
                  "gradients"]


@pytest.mark.parametrize("adapter", [FinetuneAdapter, FinetuneFreezeAdapter, LoRAAdapter],
                         ids=["finetune", "finetune_freeze", "lora"])
def test_core_adapters_conform_on_gamenet(adapter: type) -> None:
    assert check_component(adapter) == ADAPTER_CHECKS


def test_adapters_conform_on_another_recommender_and_the_counts_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="medtoolkit.testing"):
        check_component(FinetuneAdapter, recommender=CausalToy)
        params = LoRAAdapter.Params(rank=2, targets=["encoder.*"])
        check_component(LoRAAdapter, params, recommender=GAMENet,
                        recommender_params=GAMENet.Params(encoder=Node.of(GRUEncoder), memory=Node.of(GCNMemory)))
    # CausalToy: a 31 x 15 bag and a scale; LoRA: rank 2 on encoder.query (256 -> 64) plus the 128 -> 15 head
    assert "check_component(FinetuneAdapter): 466 of 466 parameters of CausalToy train (100.00%)" in caplog.text
    assert f"check_component(LoRAAdapter): {2 * (256 + 64) + 128 * 15 + 15} of {205776 + 2 * (256 + 64)} " \
           "parameters of GAMENet train" in caplog.text


class _BiasWrapper(Recommender):
    """What the toy adapters' ``attach`` returns: the frozen model plus the adapter's bias."""

    class Params(Params):
        pass

    def __init__(self, inner: Recommender, adapter: nn.Module) -> None:
        super().__init__(None, inner.schema)
        self.inner = inner
        self.adapter = adapter

    def forward(self, batch):  # noqa: ANN001, ANN201
        return self.inner(batch) + self.adapter.bias


class _ToyAdapter(Adapter):
    """Adds a learned per-drug bias to the logits through a wrapper (:attr:`wrapper`)."""

    wrapper: type = _BiasWrapper

    class Params(Params):
        pass

    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.bias = nn.Parameter(torch.zeros(schema.n_drugs))

    def attach(self, recommender):  # noqa: ANN001, ANN201
        recommender.requires_grad_(False)
        return self.wrapper(recommender, self)


class WrappingAdapter(_ToyAdapter):
    """Conforms: returns a wrapper (not the recommender itself)."""


class ReturnsAModule(_ToyAdapter):
    def attach(self, recommender):  # noqa: ANN001, ANN201
        return nn.Linear(2, 2)


class _Wider(_BiasWrapper):
    def forward(self, batch):  # noqa: ANN001, ANN201
        logits = super().forward(batch)
        return torch.cat([logits, logits[..., :1]], -1)


class WidensTheOutput(_ToyAdapter):
    wrapper = _Wider


class FreezesEverything(_ToyAdapter):
    def attach(self, recommender):  # noqa: ANN001, ANN201
        return super().attach(recommender).requires_grad_(False)


class _Unregistered(_BiasWrapper):
    def __init__(self, inner: Recommender, adapter: nn.Module) -> None:
        super().__init__(inner, adapter)
        del self.adapter
        self.__dict__["adapter"] = adapter  # a plain attribute, not a submodule


class KeepsItsBiasOutside(_ToyAdapter):
    """Trains a bias the returned model does not hold (so it is neither optimised nor saved)."""

    wrapper = _Unregistered


_counter = {"n": 0}


class _Renamed(_BiasWrapper):
    """Registers the adapter under a new name on every construction."""

    def __init__(self, inner: Recommender, adapter: nn.Module) -> None:
        super().__init__(inner, adapter)
        del self.adapter
        _counter["n"] += 1
        self.key = f"adapter_{_counter['n']}"
        self.add_module(self.key, adapter)

    def forward(self, batch):  # noqa: ANN001, ANN201
        return self.inner(batch) + getattr(self, self.key).bias


class RenamesOnEveryAttach(_ToyAdapter):
    """A fresh attach names its parameters differently: it cannot load the state dict."""

    wrapper = _Renamed


class HoldsALooseTensor(_ToyAdapter):
    def attach(self, recommender):  # noqa: ANN001, ANN201
        self.offsets = torch.zeros(3)  # a plain tensor attribute of a registered submodule
        return super().attach(recommender)


class _ReadsCurrent(_BiasWrapper):
    def forward(self, batch):  # noqa: ANN001, ANN201
        return super().forward(batch) + batch.medications


class AddsCurrentMedications(_ToyAdapter):
    wrapper = _ReadsCurrent


class _HookedGradient(_BiasWrapper):
    """Writes a gradient into a frozen parameter from a backward hook."""

    def forward(self, batch):  # noqa: ANN001, ANN201
        output = super().forward(batch)
        frozen = self.inner.scale
        if output.requires_grad:
            output.register_hook(lambda grad: setattr(frozen, "grad", torch.zeros_like(frozen)))
        return output


class GradientOnAFrozenParameter(_ToyAdapter):
    wrapper = _HookedGradient


class UnusedAdapterParameter(_ToyAdapter):
    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.spare = nn.Parameter(torch.zeros(2))


class PatchesForward(_ToyAdapter):
    """Replaces ``forward`` on the recommender object: a copy would still call the original modules."""

    def attach(self, recommender):  # noqa: ANN001, ANN201
        recommender.requires_grad_(False)
        recommender.add_module("output_bias", self)
        original = recommender.forward
        recommender.forward = lambda batch: original(batch) + self.bias
        return recommender


def test_a_wrapping_adapter_conforms() -> None:
    assert check_component(WrappingAdapter, recommender=CausalToy) == ADAPTER_CHECKS


@pytest.mark.parametrize(
    ("toy", "check", "fragment"),
    [
        (ReturnsAModule, "attach", "attach(CausalToy) must return a Recommender, got Linear"),
        (WidensTheOutput, "attach", "the adapted CausalToy returns (12, 4, 16), the plain one (12, 4, 15)"),
        (FreezesEverything, "trainable", "attach(CausalToy) left no parameter to train (0 of 481)"),
        (KeepsItsBiasOutside, "trainable", "the adapter's trainable parameters ['bias'] are not parameters of the "
                                           "returned model"),
        (RenamesOnEveryAttach, "state_dict", "a fresh recommender after a fresh attach cannot load the state_dict"),
        (HoldsALooseTensor, "device", "adapter.offsets: Tensor (3,) is not a registered buffer/parameter"),
        (AddsCurrentMedications, "causality", "changing the medications of visit 0 changed outputs at visits <= 0"),
        (GradientOnAFrozenParameter, "gradients", "frozen parameters got gradients after attach: inner.scale"),
        (UnusedAdapterParameter, "gradients", "parameters without gradients (unused?): adapter.spare"),
        (PatchesForward, "attach", "attach replaced forward on the model object ('<model>.forward')"),
    ],
)
def test_broken_adapters_fail_with_the_check_named(toy: type, check: str, fragment: str) -> None:
    with pytest.raises(AssertionError) as info:
        check_component(toy, recommender=CausalToy)
    assert f"check_component({toy.__name__}) [{check}]" in str(info.value)
    assert fragment in str(info.value)


# ---------------------------------------------------------------- model extras
class ExtrasToy(CausalToy):
    """Provides ``representation`` (the causal code sum, [B, T, N]) and ``scale``."""

    @classmethod
    def extras_provided(cls, params: Params) -> frozenset[str]:
        return frozenset({"representation", "scale"})

    def values(self, batch) -> dict:  # noqa: ANN001
        return {"representation": self.current(batch).cumsum(1), "scale": self.scale}

    def forward(self, batch, extras=()):  # noqa: ANN001, ANN201
        logits = super().forward(batch)
        if not extras:
            return logits
        values = self.values(batch)
        return ModelOutput(logits, {name: values[name] for name in extras})


class ExtrasOnlyHead(ExtrasToy):
    """A head used only for the ``projected`` extra (a dataclass field): its gradients come through the extras."""

    @dataclasses.dataclass
    class Projection:
        values: torch.Tensor
        mask: torch.Tensor

    @classmethod
    def extras_provided(cls, params: Params) -> frozenset[str]:
        return frozenset({"representation", "projected"})

    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.projector = nn.Linear(schema.n_drugs, 3)

    def values(self, batch) -> dict:  # noqa: ANN001
        representation = self.current(batch).cumsum(1)
        projected = self.projector(representation).masked_fill(~batch.visit_mask[..., None], float("-inf"))
        return {"representation": representation, "projected": self.Projection(projected, batch.visit_mask)}


class ExtrasOnlyHeadUnused(ExtrasOnlyHead):
    def __init__(self, params=None, schema=None) -> None:  # noqa: ANN001
        super().__init__(params, schema)
        self.forgotten = nn.Linear(2, 2)


def test_parameters_serving_only_extras_get_their_gradients_through_them() -> None:
    assert "gradients" in check_component(ExtrasOnlyHead)
    with pytest.raises(AssertionError, match=r"\[gradients\] parameters without gradients \(unused\?\): "
                                             r"forgotten.weight, forgotten.bias \(the objective covered the logits "
                                             r"and the extras \['projected', 'representation'\]\)"):
        check_component(ExtrasOnlyHeadUnused)


class RepresentationLoss(Loss):
    """Reads only the ``representation`` extra: the mean square at real visits."""

    class Params(Params):
        weight: float = 1.0

    @classmethod
    def extras_needed(cls, params: Params) -> frozenset[str]:
        return frozenset({"representation"})

    def forward(self, logits, batch, extras):  # noqa: ANN001, ANN201
        return (extras["representation"][batch.visit_mask] ** 2).mean()


def test_a_recommender_providing_extras_conforms() -> None:
    assert check_component(ExtrasToy) == ["params", "shapes", "extras", "state_dict", "device", "determinism",
                                          "causality", "gradients"]


def test_a_loss_reading_extras_conforms_with_a_provider() -> None:
    assert check_component(RepresentationLoss, recommender=ExtrasToy) == [
        "params", "extras", "shapes", "state_dict", "device", "determinism", "gradients"]


def test_a_loss_reading_extras_needs_a_provider() -> None:
    with pytest.raises(AssertionError, match=r"check_component\(RepresentationLoss\) \[extras\] this loss reads the "
                                             r"model extras \['representation'\]: pass recommender="):
        check_component(RepresentationLoss)
    with pytest.raises(AssertionError, match=r"\[extras\] recommender CausalToy does not provide the extras "
                                             r"\['representation'\] this loss reads \(it provides: none\)"):
        check_component(RepresentationLoss, recommender=CausalToy)


class ReturnsTensorForExtras(ExtrasToy):
    def forward(self, batch, extras=()):  # noqa: ANN001, ANN201
        return CausalToy.forward(self, batch)


class ForgetsAnExtra(ExtrasToy):
    def forward(self, batch, extras=()):  # noqa: ANN001, ANN201
        output = super().forward(batch, extras)
        if isinstance(output, ModelOutput):
            return ModelOutput(output.logits, {k: v for k, v in output.extras.items() if k != "scale"})
        return output


class AlwaysModelOutput(ExtrasToy):
    def forward(self, batch, extras=()):  # noqa: ANN001, ANN201
        return ModelOutput(CausalToy.forward(self, batch), self.values(batch))


class ModelOutputForEmptyExtras(ExtrasToy):
    """Returns a ModelOutput whenever ``extras`` is passed, even empty."""

    def forward(self, batch, extras=None):  # noqa: ANN001, ANN201
        if extras is None:
            return CausalToy.forward(self, batch)
        return ModelOutput(CausalToy.forward(self, batch), self.values(batch))


class FlatLogitsWithExtras(ExtrasToy):
    def forward(self, batch, extras=()):  # noqa: ANN001, ANN201
        output = super().forward(batch, extras)
        if isinstance(output, ModelOutput):
            return ModelOutput(output.logits[..., :3], output.extras)
        return output


class DetachedExtras(ExtrasToy):
    def values(self, batch) -> dict:  # noqa: ANN001
        return {name: value.detach() for name, value in super().values(batch).items()}


class InfiniteOnExtras(RepresentationLoss):
    def forward(self, logits, batch, extras):  # noqa: ANN001, ANN201
        return super().forward(logits, batch, extras) / 0.0


@pytest.mark.parametrize(
    ("toy", "fragment"),
    [
        (ReturnsTensorForExtras, "forward(batch, extras=('representation', 'scale')) must return a ModelOutput, "
                                 "got Tensor"),
        (ForgetsAnExtra, "forward(batch, extras=('representation', 'scale')) lacks the extras ['scale']"),
        (ModelOutputForEmptyExtras, "forward(batch, extras=()) must still return the logits tensor, got ModelOutput"),
        (FlatLogitsWithExtras, "ModelOutput.logits must be (12, 4, 15), got (12, 4, 3)"),
    ],
)
def test_broken_extras_providers_fail(toy: type, fragment: str) -> None:
    with pytest.raises(AssertionError) as info:
        check_component(toy)
    assert f"check_component({toy.__name__}) [extras]" in str(info.value)
    assert fragment in str(info.value)


def test_a_model_output_without_extras_asked_fails_the_shapes() -> None:
    with pytest.raises(AssertionError, match=r"check_component\(AlwaysModelOutput\) \[shapes\] forward\(batch\) "
                                             r"must return the logits tensor, got a ModelOutput"):
        check_component(AlwaysModelOutput)


@pytest.mark.parametrize(
    ("loss", "provider", "check", "fragment"),
    [
        (RepresentationLoss, DetachedExtras, "gradients", "no gradient reaches the parameters of DetachedExtras"),
        (InfiniteOnExtras, ExtrasToy, "shapes", "output has NaN/inf"),
        (RepresentationLoss, ReturnsTensorForExtras, "extras", "ReturnsTensorForExtras(batch, extras=("
                                                               "'representation',)) must return a ModelOutput"),
    ],
)
def test_broken_extras_losses_fail(loss: type, provider: type, check: str, fragment: str) -> None:
    with pytest.raises(AssertionError) as info:
        check_component(loss, recommender=provider)
    assert f"check_component({loss.__name__}) [{check}]" in str(info.value)
    assert fragment in str(info.value)


def test_moved_to_follows_containers_and_dataclasses() -> None:
    from medtoolkit.testing.conformance import moved_to

    @dataclasses.dataclass(frozen=True)
    class Pair:
        left: torch.Tensor
        right: list

    value = {"pair": Pair(torch.ones(1), [torch.zeros(2), "text"]), "n": 3}
    moved = moved_to(value, "cpu")
    assert moved["n"] == 3 and moved["pair"].right[1] == "text" and torch.equal(moved["pair"].left, torch.ones(1))
    assert moved["pair"] is not value["pair"]
