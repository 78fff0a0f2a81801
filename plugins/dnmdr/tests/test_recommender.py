"""The ``dnmdr`` recommender (tiny data)."""

from __future__ import annotations

import pytest
import torch

import medtoolkit_dnmdr.plugin
import medtoolkit_molecule.plugin
from medtoolkit.components.encoders.gru import GRUEncoder
from medtoolkit.components.params import Node
from medtoolkit.plugins import PluginHost
from medtoolkit.testing import check_component, fake_batch, fake_schema
from medtoolkit_dnmdr import DNMDR, EvolveGATEncoder, GATViewsMemory
from medtoolkit_molecule import MPNNEncoder

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore:mpnn")]

ALL_CHECKS = {"params", "shapes", "state_dict", "device", "determinism", "causality", "gradients"}


def small(**params: object) -> DNMDR.Params:
    encoder = params.pop("encoder", Node.of(EvolveGATEncoder, embedding_dim=8, hidden_dim=8, output_dim=8))
    return DNMDR.Params(encoder=encoder, memory=Node.of(GATViewsMemory),
                        drug_encoder=Node.of(MPNNEncoder, dim=8, atom_pooling="mean"), hidden_dim=16, **params)


@pytest.mark.parametrize("params", [
    {}, {"internal_view": False},
    {"encoder": Node.of(GRUEncoder, embedding_dim=8, hidden_dim=8, output_dim=8)},  # dnmdr_dynn
])
def test_dnmdr_conforms(params: dict[str, object]) -> None:
    assert set(check_component(DNMDR, small(**params))) == ALL_CHECKS


def test_default_slots_resolve_through_the_plugins() -> None:
    host = PluginHost(load_entry_points=False, extra_plugins=(
        ("medtoolkit-molecule", "0.1.0", medtoolkit_molecule.plugin),
        ("medtoolkit-dnmdr", "0.1.0", medtoolkit_dnmdr.plugin)))
    params = DNMDR.Params()
    for name, kind in (("encoder", "encoder"), ("memory", "memory"), ("drug_encoder", "encoder")):
        getattr(params, name).resolve(kind, host)
    model = DNMDR(params, fake_schema())
    assert isinstance(model.encoder, EvolveGATEncoder) and isinstance(model.drug_encoder, MPNNEncoder)
    assert model.drug_encoder.params.atom_pooling == "mean"  # Eq. 21: atoms averaged


def test_internal_view_feeds_the_output_layer() -> None:
    schema, batch = fake_schema(), fake_batch()
    torch.manual_seed(0)
    with_view = DNMDR(small(), schema)
    without = DNMDR(small(internal_view=False), schema)
    assert with_view.output[1].in_features == 8 + 16 + schema.n_drugs
    assert without.output[1].in_features == 8 + 16
    assert not hasattr(without, "drug_encoder")
    logits = with_view.eval()(batch)
    assert logits.shape == (batch.batch_size, batch.max_visits, schema.n_drugs)


def test_width_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="output_dim \\(4\\) must equal"):
        DNMDR(DNMDR.Params(encoder=Node.of(EvolveGATEncoder, embedding_dim=8, hidden_dim=8, output_dim=8),
                           memory=Node.of(GATViewsMemory), drug_encoder=Node.of(MPNNEncoder, dim=4)),
              fake_schema())


def test_knowledge_needed_follows_the_internal_view() -> None:
    assert DNMDR.knowledge_needed(small()) == {"molecules"}
    assert DNMDR.knowledge_needed(small(internal_view=False)) == set()
