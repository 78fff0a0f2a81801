"""Tests of the ``safedrug`` recommender (tiny data; values worked out by hand)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

import medtoolkit_molecule.plugin
from medtoolkit.components.encoders.gru import GRUEncoder
from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.params import Node, build_drug_encoder
from medtoolkit.components.schema import DataSchema
from medtoolkit.config import ConfigValidationError, EvalParams, TrainerParams, validate_config
from medtoolkit.data.loaders.mimic3 import MIMIC3Dataset
from medtoolkit.fit import fit_evaluate
from medtoolkit.plugins import PluginHost
from medtoolkit.presets import preset_config
from medtoolkit.tasks.medication import MedicationRecommendationTask
from medtoolkit.testing import check_component, fake_batch, fake_schema
from medtoolkit.testing.fake import FAKE_DRUG_WITHOUT_SUBSTRUCTURES, fake_smiles
from medtoolkit_molecule import MPNNEncoder, SafeDrug, private_substructure_mask

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore:mpnn")]

ALL_CHECKS = {"params", "shapes", "state_dict", "device", "determinism", "causality", "gradients"}
SMALL_GRU = dict(embedding_dim=8, hidden_dim=8, output_dim=8, dropout=0.5, pooling="sum")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(extra_plugins=(("medtoolkit-molecule", "0.1.0", medtoolkit_molecule.plugin),))


def small(**params: object) -> SafeDrug.Params:
    drug = params.pop("drug_encoder", Node.of(MPNNEncoder, dim=8))
    return SafeDrug.Params(encoder=Node.of(GRUEncoder, **SMALL_GRU), drug_encoder=drug, **params)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"global_view": False},
        {"local_view": False},
        {"drug_encoder": Node.of(MPNNEncoder, dim=8, trainable=False)},
        {"drug_encoder": Node.of(MPNNEncoder, dim=8, atom_pooling="mean", layers=1, radius=1)},
    ],
)
def test_safedrug_conforms(params: dict[str, object]) -> None:
    assert set(check_component(SafeDrug, small(**params))) == ALL_CHECKS


def test_default_params_conform(host: PluginHost) -> None:
    """The default slots (core gru with SafeDrug's sizes, mpnn) resolve and pass every check."""
    params = SafeDrug.Params()
    assert params.encoder.raw_params == dict(embedding_dim=64, hidden_dim=64, output_dim=64, dropout=0.5, pooling="sum")
    assert params.drug_encoder.type == "mpnn"
    assert set(check_component(SafeDrug)) == ALL_CHECKS


def local_only_schema() -> DataSchema:
    """2 drugs x 3 substructures, H = [[1, 0, 1], [0, 1, 0]]; no molecules needed without the global view."""
    return DataSchema(vocab_sizes={"diagnoses": 30, "procedures": 20}, n_drugs=2, ddi_adjacency=None,
                      substructure_mask=np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32))


def test_local_view_by_hand() -> None:
    """global_view off: logits = u @ (W_b * H^T).

    W_b = [[1, 2], [3, 4], [5, 6]] (S x N), H^T = [[1, 0], [0, 1], [1, 0]], W_b * H^T = [[1, 0], [0, 4], [5, 0]].
    W_u = 0 and b_u = [0, ln 3, -ln 3] give u = sigmoid(b_u) = [1/2, 3/4, 1/4] at every visit, so
    logits = [1/2 * 1 + 1/4 * 5, 3/4 * 4] = [1.75, 3.0].
    """
    schema = local_only_schema()
    model = SafeDrug(small(global_view=False), schema)
    assert not hasattr(model, "drug_encoder") and model.private_substructures == ()
    with torch.no_grad():
        model.substructure_weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
        model.substructure_query.weight.zero_()
        model.substructure_query.bias.copy_(torch.tensor([0.0, math.log(3.0), -math.log(3.0)]))
    model.eval()
    batch = fake_batch()
    logits = model(batch)
    assert logits.shape == (*batch.visit_mask.shape, 2)
    n_real = int(batch.visit_mask.sum())
    torch.testing.assert_close(logits[batch.visit_mask], torch.tensor([1.75, 3.0]).expand(n_real, 2))
    query = model.encoder(batch)
    u = torch.sigmoid(model.substructure_query(query))
    torch.testing.assert_close(logits, u @ (model.substructure_weight * torch.tensor([[1.0, 0], [0, 1], [1, 0]])))


def test_both_views_multiply_and_global_view_is_layer_norm_of_residual() -> None:
    schema, batch = fake_schema(), fake_batch()
    torch.manual_seed(0)
    model = SafeDrug(small(), schema).eval()
    query = model.encoder(batch)
    drugs = model.drug_encoder()
    s = torch.sigmoid(query @ drugs.T)
    pre = s + s @ model.global_linear.weight.T + model.global_linear.bias
    g = (pre - pre.mean(-1, keepdim=True)) / torch.sqrt(pre.var(-1, unbiased=False, keepdim=True) + 1e-5)
    g = g * model.global_norm.weight + model.global_norm.bias
    torch.testing.assert_close(model.global_scores(query), g)
    torch.testing.assert_close(model(batch), model.local_scores(query) * g)


def test_empty_substructure_row_gets_a_private_column() -> None:
    mask, private = private_substructure_mask(np.array([[1, 0], [0, 0]], dtype=np.float32))
    assert mask.tolist() == [[1, 0, 0], [0, 0, 1]] and private == (1,)
    schema = fake_schema()
    assert schema.require_substructures("test")[FAKE_DRUG_WITHOUT_SUBSTRUCTURES].sum() == 0
    model = SafeDrug(small(), schema).eval()
    assert model.private_substructures == (FAKE_DRUG_WITHOUT_SUBSTRUCTURES,)
    assert model.substructure_mask_t.shape == (6 + 1, 15)
    local = model.local_scores(model.encoder(fake_batch()))[..., FAKE_DRUG_WITHOUT_SUBSTRUCTURES]
    assert float(local.detach().abs().min()) > 0  # not the constant 0 (probability 0.5) of an empty row


def test_width_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"drug encoder's output_dim \(4\) must equal the visit encoder's "
                                         r"output_dim \(8\)"):
        SafeDrug(small(drug_encoder=Node.of(MPNNEncoder, dim=4)), fake_schema())


def test_views_cannot_both_be_off() -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="cannot both be false"):
        SafeDrug.Params(global_view=False, local_view=False)


def test_knowledge_needed() -> None:
    assert SafeDrug.knowledge_needed(small()) == {"substructures", "molecules"}
    assert SafeDrug.knowledge_needed(small(global_view=False)) == {"substructures"}
    assert SafeDrug.knowledge_needed(small(local_view=False)) == {"molecules"}


def test_visit_encoder_in_the_drug_encoder_slot_is_refused(host: PluginHost) -> None:
    raw = preset_config("gamenet", host=host)
    raw["model"] = {"type": "safedrug", "drug_encoder": {"type": "gru"}}
    with pytest.raises(ConfigValidationError, match=r"encoder 'gru' consumes visits; this slot takes a drug encoder"):
        validate_config(raw, host=host)
    with pytest.raises(TypeError, match="consumes visits"):
        build_drug_encoder(Node.of(GRUEncoder), fake_schema())
    raw["model"] = {"type": "safedrug"}
    config = validate_config(raw, host=host)
    assert config.model.params.drug_encoder.component is MPNNEncoder


def test_parameter_count_at_benchmark_sizes() -> None:
    """1958 diagnoses, 1430 procedures, 112 drugs, 442 substructures, D = 64; the drug encoder excluded.

    By hand: code embeddings (1958 + 1) * 64 + (1430 + 1) * 64 = 216,960 (216,832 + 2 padding rows of 64);
    two GRUs 64 -> 64: 2 * 3 * (64*64 + 64*64 + 64 + 64) = 49,920; query Linear(128 -> 64): 128*64 + 64 = 8,256;
    W_u, b_u: 64*442 + 442 = 28,730; W_b: 442*112 = 49,504; W_g, b_g: 112*112 + 112 = 12,656;
    LayerNorm(112): 224. Total 366,250 = the public model's 366,122 + 128 (our padding rows).
    """
    n_drugs, n_sub = 112, 442
    mask = np.zeros((n_drugs, n_sub), dtype=np.float32)
    mask[np.arange(n_drugs), np.arange(n_drugs) % n_sub] = 1.0  # no empty row: no private column
    mask[0, n_drugs:] = 1.0
    schema = DataSchema(vocab_sizes={"diagnoses": 1958, "procedures": 1430, "medications": n_drugs}, n_drugs=n_drugs,
                        ddi_adjacency=None, smiles=fake_smiles(n_drugs), substructure_mask=mask)
    model = SafeDrug(SafeDrug.Params(), schema)
    count = {name: sum(p.numel() for p in module.parameters()) for name, module in model.named_children()}
    own = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("drug_encoder."))
    assert count["encoder"] == 216_960 + 49_920 + 8_256
    assert count["substructure_query"] == 28_730 and model.substructure_weight.numel() == 49_504
    assert count["global_linear"] == 12_656 and count["global_norm"] == 224
    assert own == 366_250 == 366_122 + 2 * 64


# --- training ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any, DataSchema]:
    """The built-in MIMIC-III demo (it has SMILES and BRICS substructures), one random split."""
    dataset = MIMIC3Dataset(MIMIC3Dataset.Params(min_visits=1, cache_dir=tmp_path_factory.mktemp("cache")))
    data = dataset.load(progress=False)
    task = MedicationRecommendationTask(MedicationRecommendationTask.Params(protocol="random", seeds=[0]))
    split = task.splits(data)[0]
    return data, task, split, task.build_schema(data, split)


@pytest.mark.parametrize("trainable", [True, False])
def test_two_epochs_on_the_demo_train_the_drug_encoder_unless_frozen(
    demo: tuple[Any, Any, Any, DataSchema], trainable: bool, host: PluginHost
) -> None:
    data, task, split, schema = demo
    torch.manual_seed(0)
    params = SafeDrug.Params(encoder=Node.of(GRUEncoder, **SMALL_GRU),
                             drug_encoder=Node.of(MPNNEncoder, dim=8, trainable=trainable))
    model = SafeDrug(params, schema)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    result = fit_evaluate(model, [BCELoss(BCELoss.Params(), schema)], data, task=task, split=split, device="cpu",
                          trainer=TrainerParams(epochs=2, lr=0.01, batch_size=16, progress="none"),
                          eval=EvalParams(bootstrap_rounds=2), host=host)
    (trained,) = result.models.values()
    after = trained.state_dict()
    drug_keys = [key for key in before if key.startswith("drug_encoder.")]
    assert {"drug_encoder.embedding.weight", "drug_encoder.layers.0.weight"} <= set(drug_keys)
    changed = [key for key in drug_keys if not torch.equal(before[key], after[key])]
    assert changed == (drug_keys if trainable else [])
    assert not torch.equal(before["substructure_weight"], after["substructure_weight"])
