"""Tests of the ``gamenet`` recommender."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medtoolkit import hookimpl, plugins
from medtoolkit.components.encoders.gru import GRUEncoder
from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.memories.gcn import GCNMemory
from medtoolkit.components.params import Node
from medtoolkit.components.recommenders.gamenet import GAMENet
from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.testing import check_component, fake_batch, fake_ehr, fake_schema


def _params(**encoder: object) -> GAMENet.Params:
    return GAMENet.Params(encoder=Node.of(GRUEncoder, **encoder), memory=Node.of(GCNMemory))


class _BuiltinParts:
    @hookimpl
    def register_encoders(self, register):  # noqa: ANN001, ANN201
        register("gru", GRUEncoder)

    @hookimpl
    def register_memories(self, register):  # noqa: ANN001, ANN201
        register("gcn", GCNMemory)


@pytest.fixture
def default_host(monkeypatch: pytest.MonkeyPatch) -> plugins.PluginHost:
    """A host that knows ``gru`` and ``gcn`` (from the core, or from a stand-in plugin)."""
    host = plugins.PluginHost(load_entry_points=False)
    if "gru" not in host.registry("encoder"):
        host.add_plugin("stand-in", "0", _BuiltinParts())
    monkeypatch.setattr(plugins, "default_host", lambda: host)
    return host


def test_conformance() -> None:
    assert "causality" in check_component(GAMENet, _params())
    params = GAMENet.Params(
        encoder=Node.of(GRUEncoder, rnn="lstm", output_dim=16),
        memory=Node.of(GCNMemory, ddi_in_memory=False, history=False),
        hidden_dim=8,
    )
    assert "causality" in check_component(GAMENet, params)


def test_default_slots_resolve_through_the_default_host(default_host: plugins.PluginHost) -> None:
    schema = fake_schema()
    model = GAMENet(GAMENet.Params(), schema)
    assert isinstance(model.encoder, GRUEncoder) and isinstance(model.memory, GCNMemory)
    assert model.params.encoder.type == "gru" and model.params.encoder.component is GRUEncoder
    assert model(fake_batch()).shape == (12, 4, schema.n_drugs)
    # a bare node with parameters is validated like a config node
    custom = GAMENet(GAMENet.Params(encoder=Node(type="gru", output_dim=8)), schema)
    assert custom.encoder.output_dim == 8 and custom.memory.output_dim == 16


def test_bad_default_node_reports_clearly(default_host: plugins.PluginHost) -> None:
    from medtoolkit.config import ConfigValidationError

    with pytest.raises(ConfigValidationError, match="unknown key 'hiden_dim'"):
        GAMENet(GAMENet.Params(encoder=Node(type="gru", hiden_dim=8)), fake_schema())
    with pytest.raises(ConfigValidationError, match="unknown encoder 'gruu'"):
        GAMENet(GAMENet.Params(encoder=Node(type="gruu")), fake_schema())


def test_parameter_count_on_mimic_sizes() -> None:
    rng = np.random.default_rng(0)
    co = (rng.random((112, 112)) < 0.1).astype(np.float32)
    co = np.maximum(co, co.T)
    schema = DataSchema(
        vocab_sizes={"diagnoses": 1958, "procedures": 1430, "medications": 112},
        n_drugs=112,
        ddi_adjacency=np.zeros((112, 112), dtype=np.float32),
        cooccurrence_adjacency=co,
    )
    model = GAMENet(_params(dropout=0.5), schema)
    count = sum(p.numel() for p in model.parameters())
    # the SafeDrug-repo GAMENet has 444,209; ours adds one zero padding row per embedding table
    assert count == 444_209 + 2 * 64 == 444_337


def _prefix(batch: PaddedBatch, t: int) -> PaddedBatch:
    return dataclasses.replace(
        batch,
        codes={k: v[:, : t + 1] for k, v in batch.codes.items()},
        visit_mask=batch.visit_mask[:, : t + 1],
        medications=batch.medications[:, : t + 1],
    )


def test_batched_equals_reference_prefix_protocol() -> None:
    # the reference predicts visit t from the prefix 1..t (one forward per visit)
    data = fake_ehr()
    batch = fake_batch(data)
    torch.manual_seed(0)
    model = GAMENet(_params(), fake_schema(data)).eval()
    with torch.no_grad():
        full = model(batch)
        for t in range(batch.max_visits):
            prefix = model(_prefix(batch, t))[:, t]
            real = batch.visit_mask[:, t]
            assert torch.allclose(full[:, t][real], prefix[real], atol=1e-5)


def test_training_reduces_the_loss() -> None:
    data = fake_ehr()
    schema = fake_schema(data)
    batch = fake_batch(data)
    torch.manual_seed(0)
    model = GAMENet(_params(), schema)
    loss = BCELoss(BCELoss.Params(), schema)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    start = loss(model(batch), batch).item()
    for _ in range(30):
        optimizer.zero_grad()
        value = loss(model(batch), batch)
        value.backward()
        optimizer.step()
    assert loss(model.eval()(batch), batch).item() < start - 0.1
