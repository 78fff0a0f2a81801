"""Tests of medtoolkit-algnet (run after ``pip install -e plugins/algnet``; tiny data, ~seconds)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
import torch

import medtoolkit
import medtoolkit_algnet.plugin
from medtoolkit.components.params import Node
from medtoolkit.components.schema import DataSchema
from medtoolkit.config import validate_config
from medtoolkit.plugins import PluginHost
from medtoolkit.presets import preset_config
from medtoolkit.testing import check_component, fake_batch, fake_ehr, fake_schema
from medtoolkit_algnet import ABLATIONS, FULL_MODEL, Ablation, ALGNet, DualSelfAttentionEncoder, LightGCNMemory, LightGraph
from medtoolkit_algnet.encoder import CausalSelfAttention

ALL_CHECKS = {"params", "shapes", "state_dict", "device", "determinism", "causality", "gradients"}
SMALL_ENCODER = dict(embedding_dim=8, hidden_dim=8, heads=2, head_dim=4, output_dim=8)
PRESETS = sorted(["algnet", *(ablation.name for ablation in ABLATIONS)])
TINY_DATA: dict[str, Any] = {
    "type": "synthetic", "n_patients": 60, "n_diagnoses": 40, "n_procedures": 30, "n_drugs": 12, "seed": 0,
    "mean_diagnoses": 5, "mean_procedures": 3, "mean_medications": 4, "n_ddi_pairs": 8,
    "n_substructures": 0, "n_conditions": 4,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(load_entry_points=False, extra_plugins=(("medtoolkit-algnet", "0.1.0", medtoolkit_algnet.plugin),))


# --- conformance -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        LightGCNMemory.Params(),
        LightGCNMemory.Params(layers=3, alpha=[0.25, 0.25, 0.25, 0.25], first_visit="static", weighted=True),
        LightGCNMemory.Params(shared_embedding=True, learn_beta=False, self_loops=True, propagation="layerwise"),
        LightGCNMemory.Params(ddi_in_memory=False, history=False),
    ],
)
def test_lightgcn_conforms(params: LightGCNMemory.Params) -> None:
    assert set(check_component(LightGCNMemory, params)) == ALL_CHECKS


@pytest.mark.parametrize("rnn", ["gru", "lstm", "none"])
def test_dual_self_attention_conforms(rnn: str) -> None:
    params = DualSelfAttentionEncoder.Params(rnn=rnn, separate_output=rnn == "lstm", **SMALL_ENCODER)
    assert set(check_component(DualSelfAttentionEncoder, params)) == ALL_CHECKS


@pytest.mark.parametrize("memory", [LightGCNMemory, "gcn"])
def test_algnet_conforms(memory: Any, host: PluginHost) -> None:
    memory_node = Node.of(memory) if not isinstance(memory, str) else Node(type=memory).resolve("memory", host)
    params = ALGNet.Params(hidden_dim=8, encoder=Node.of(DualSelfAttentionEncoder, **SMALL_ENCODER), memory=memory_node)
    assert set(check_component(ALGNet, params)) == ALL_CHECKS


# --- light graph convolution -------------------------------------------------------------------


@pytest.mark.parametrize("propagation", ["precomputed", "layerwise"])
def test_lightgcn_propagation_matches_hand_computation(propagation: str) -> None:
    """Path graph 0-1-2: degrees 1, 2, 1; A_hat = D^-1/2 A D^-1/2 has 1/sqrt(2) on every edge."""
    adjacency = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.float32)
    graph = LightGraph(adjacency, layers=2, alpha=[0.2, 0.3, 0.5], self_loops=False, weighted=False,
                       propagation=propagation)
    e0 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0]])
    s = float(1.0 / np.sqrt(2.0))
    a_hat = torch.tensor([[0.0, s, 0.0], [s, 0.0, s], [0.0, s, 0.0]], dtype=torch.float32)
    e1 = a_hat @ e0
    e2 = a_hat @ e1
    # by hand: e1 = [[0, s], [3s, 3s], [0, s]], e2 = A_hat e1 = [[1.5, 1.5], [0, 1], [1.5, 1.5]]
    torch.testing.assert_close(e1, torch.tensor([[0.0, s], [3 * s, 3 * s], [0.0, s]]))
    torch.testing.assert_close(e2, torch.tensor([[1.5, 1.5], [0.0, 1.0], [1.5, 1.5]]))
    torch.testing.assert_close(graph(e0), 0.2 * e0 + 0.3 * e1 + 0.5 * e2)
    assert not list(graph.parameters())  # light: no weights


@pytest.mark.parametrize(
    ("alpha", "weights"), [(None, (1 / 3, 1 / 3, 1 / 3)), ([0.0, 0.5, 0.5], (0.0, 0.5, 0.5))]
)
def test_lightgcn_memory_bank_is_eq_3(alpha: list[float] | None, weights: tuple[float, float, float]) -> None:
    """Default: LightGCN's 1/(K+1) on E_0..E_K; [0, 1/2, 1/2] is Eq. 2 as printed."""
    schema = fake_schema()
    memory = LightGCNMemory(LightGCNMemory.Params(alpha=alpha), schema, query_dim=4)
    adjacency = torch.as_tensor(schema.cooccurrence_adjacency > 0, dtype=torch.float32)
    degree = adjacency.sum(1)
    inv = torch.where(degree > 0, degree.rsqrt(), torch.zeros_like(degree))
    a_hat = inv[:, None] * adjacency * inv[None, :]
    ddi = torch.as_tensor(schema.ddi_adjacency, dtype=torch.float32)
    d_deg = ddi.sum(1)
    d_inv = torch.where(d_deg > 0, d_deg.rsqrt(), torch.zeros_like(d_deg))
    d_hat = d_inv[:, None] * ddi * d_inv[None, :]
    w0, w1, w2 = weights
    e, d = memory.ehr_embedding, memory.ddi_embedding
    e_ehr = w0 * e + w1 * (a_hat @ e) + w2 * (a_hat @ a_hat @ e)
    e_ddi = w0 * d + w1 * (d_hat @ d) + w2 * (d_hat @ d_hat @ d)
    torch.testing.assert_close(memory.memory_bank(), e_ehr - memory.beta * e_ddi)
    assert memory.beta.requires_grad


@pytest.mark.parametrize("weighted", [False, True])
def test_lightgcn_precomputed_operator_equals_layerwise_message_passing(weighted: bool) -> None:
    """P = sum_k alpha_k A_hat^k applied once == K LGConv layers, values and gradients."""
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 4, size=(9, 9)).astype(np.float32)
    adjacency = np.triu(counts, 1) + np.triu(counts, 1).T  # symmetric co-occurrence counts
    adjacency[5] = adjacency[:, 5] = 0  # an isolated drug (degree 0) stays at alpha_0 E_0
    alpha = [0.1, 0.6, 0.3]
    fast = LightGraph(adjacency, 2, alpha, self_loops=False, weighted=weighted, propagation="precomputed")
    slow = LightGraph(adjacency, 2, alpha, self_loops=False, weighted=weighted, propagation="layerwise")
    e0 = torch.randn(9, 5, requires_grad=True)
    out_fast, out_slow = fast(e0), slow(e0)
    torch.testing.assert_close(out_fast, out_slow)
    torch.testing.assert_close(out_fast[5], 0.1 * e0[5])
    (grad_fast,) = torch.autograd.grad(out_fast.square().sum(), e0)
    (grad_slow,) = torch.autograd.grad(out_slow.square().sum(), e0)
    torch.testing.assert_close(grad_fast, grad_slow)
    assert fast.powers.shape == (3, 9, 9)
    torch.testing.assert_close(fast.powers[0], torch.eye(9))


def test_lightgcn_graph_buffers_move_but_are_not_saved() -> None:
    memory = LightGCNMemory(LightGCNMemory.Params(), fake_schema(), query_dim=4)
    buffers = dict(memory.named_buffers())
    assert {"ehr_graph.powers", "ddi_graph.powers"} <= set(buffers)
    assert not any("powers" in key for key in memory.state_dict())
    layerwise = LightGCNMemory(LightGCNMemory.Params(propagation="layerwise"), fake_schema(), query_dim=4)
    buffers = dict(layerwise.named_buffers())
    assert {"ehr_graph.edge_index", "ddi_graph.edge_index"} <= set(buffers)
    assert buffers["ehr_graph.edge_index"].shape[0] == 2
    assert not any("edge_index" in key for key in layerwise.state_dict())


def test_lightgcn_first_visit_read() -> None:
    data = fake_ehr()
    schema, batch = fake_schema(data), fake_batch(data)
    query = torch.randn(*batch.visit_mask.shape, 4)
    zero = LightGCNMemory(LightGCNMemory.Params(first_visit="zero"), schema, query_dim=4)(query, batch)
    torch.manual_seed(0)
    static_memory = LightGCNMemory(LightGCNMemory.Params(first_visit="static"), schema, query_dim=4)
    static = static_memory(query, batch)
    assert torch.all(zero[:, 0, 4:] == 0)  # H is empty at the first visit (Eq. 9)
    torch.testing.assert_close(static[:, 0, 4:], static[:, 0, :4])


def test_lightgcn_params_are_validated() -> None:
    with pytest.raises(pydantic.ValidationError):
        LightGCNMemory.Params(layers=2, alpha=[0.5, 0.5])
    with pytest.raises(pydantic.ValidationError, match="propagation"):
        LightGCNMemory.Params(propagation="sparse")
    with pytest.raises(pydantic.ValidationError):
        LightGCNMemory.Params(layer=2)
    with pytest.raises(ValueError, match="query width"):
        LightGCNMemory(LightGCNMemory.Params(dim=5), fake_schema(), query_dim=4)


# --- dual self-attention encoder -----------------------------------------------------------------


def test_attention_mixes_earlier_visits_only() -> None:
    """Real attention across visits: visit 2's output depends on visit 1's codes (not on visit 3's)."""
    data = fake_ehr()
    schema, batch = fake_schema(data), fake_batch(data)
    torch.manual_seed(0)
    encoder = DualSelfAttentionEncoder(DualSelfAttentionEncoder.Params(rnn="none", dropout=0.0, **SMALL_ENCODER), schema)
    encoder.eval()
    patient = int(torch.nonzero(batch.visit_mask.sum(1) >= 3)[0])
    reference = encoder(batch)
    changed = copy.deepcopy(batch)
    changed.codes["diagnoses"][patient, 0] = torch.roll(changed.codes["diagnoses"][patient, 0], 1) % 30 + 1
    changed.codes["diagnoses"][patient, 0][batch.codes["diagnoses"][patient, 0] == 0] = 0
    output = encoder(changed)
    assert not torch.allclose(output[patient, 1], reference[patient, 1])  # visit 1 sees visit 0
    later = copy.deepcopy(batch)
    later.codes["procedures"][patient, 2] = 0
    torch.testing.assert_close(encoder(later)[patient, :2], reference[patient, :2])


def test_encoder_pre_is_l_plus_gamma_s() -> None:
    data = fake_ehr()
    schema, batch = fake_schema(data), fake_batch(data)
    torch.manual_seed(0)
    encoder = DualSelfAttentionEncoder(DualSelfAttentionEncoder.Params(gamma=0.7, dropout=0.0, **SMALL_ENCODER), schema)
    streams = []
    for name in ("diagnoses", "procedures"):
        codes = batch.codes[name]
        visits = encoder.embeddings[name](codes).sum(2) / (codes > 0).sum(2, keepdim=True).clamp(min=1)
        streams.append(encoder.rnns[name](visits)[0] + 0.7 * encoder.attentions[name](visits))
    torch.testing.assert_close(encoder(batch), encoder.query(torch.relu(torch.cat(streams, -1))))


def test_attention_is_causal_scaled_dot_product() -> None:
    """Eq. 4-5 by hand: softmax(Q K^T / sqrt(d_k)) over visits <= t, heads concatenated, then W_O W_P."""
    torch.manual_seed(0)
    attention = CausalSelfAttention(input_dim=6, heads=2, head_dim=3, output_dim=4, dropout=0.0)
    visits = torch.randn(2, 5, 6)
    q, k, v = attention.qkv(visits).view(2, 5, 3, 2, 3).unbind(2)  # each [B, T, h, d_k]
    expected = torch.zeros(2, 5, 2, 3)
    for b in range(2):
        for t in range(5):
            for head in range(2):
                scores = torch.stack([q[b, t, head] @ k[b, s, head] for s in range(t + 1)]) / 3**0.5
                weights = torch.softmax(scores, 0)
                expected[b, t, head] = sum(weights[s] * v[b, s, head] for s in range(t + 1))
    torch.testing.assert_close(attention(visits), attention.project(expected.reshape(2, 5, 6)))


def test_attention_fused_output_is_w_o_then_projection() -> None:
    """The default single output layer represents exactly W_O followed by the projection."""
    torch.manual_seed(0)
    separate = CausalSelfAttention(6, heads=2, head_dim=3, output_dim=4, dropout=0.0, separate_output=True)
    fused = CausalSelfAttention(6, heads=2, head_dim=3, output_dim=4, dropout=0.0)
    w_o, w_p = separate.project
    with torch.no_grad():
        fused.qkv.load_state_dict(separate.qkv.state_dict())
        fused.project.weight.copy_(w_p.weight @ w_o.weight)
        fused.project.bias.copy_(w_p.weight @ w_o.bias + w_p.bias)
    visits = torch.randn(3, 4, 6)
    torch.testing.assert_close(fused(visits), separate(visits))
    n_separate = sum(p.numel() for p in separate.parameters())
    assert n_separate - sum(p.numel() for p in fused.parameters()) == 6 * 6 + 6


def test_encoder_params_are_validated() -> None:
    with pytest.raises(pydantic.ValidationError):
        DualSelfAttentionEncoder.Params(rnn="transformer")
    with pytest.raises(ValueError, match="nothing to encode"):
        DualSelfAttentionEncoder(DualSelfAttentionEncoder.Params(rnn="none", gamma=0.0), fake_schema())
    # caught by config validation, before any data is read
    with pytest.raises(pydantic.ValidationError, match="nothing to encode"):
        DualSelfAttentionEncoder.Params(rnn="none", gamma=0.0)


# --- plugin, presets, training -----------------------------------------------------------------------


def test_registers_through_the_hooks(host: PluginHost) -> None:
    (info,) = [p for p in host.plugins if p.name == "medtoolkit-algnet"]
    assert info.status == "ok", info.details
    assert info.registered["memory"] == ["lightgcn"]
    assert info.registered["encoder"] == ["dual_self_attention"]
    assert info.registered["recommender"] == ["algnet"]
    assert sorted(info.registered["preset"]) == PRESETS
    assert host.registry("memory").get("lightgcn").obj is LightGCNMemory


@pytest.mark.parametrize("name", PRESETS)
def test_presets_validate(name: str, host: PluginHost) -> None:
    raw = preset_config(name, host=host)
    assert raw["name"] == name
    config = validate_config(raw, host=host, source=name)
    assert config.model.type in {"algnet", "gamenet"}


#: (rnn, attention built, memory type) each ablation must give, by the paper's row names
ABLATION_PARTS = {
    "LSTM-GCN": ("lstm", False, "gcn"),
    "RNN-GCN": ("gru", False, "gcn"),
    "A-GCN": ("none", True, "gcn"),
    "A-LSTM-GCN": ("lstm", True, "gcn"),
    "A-RNN-GCN": ("gru", True, "gcn"),
    "LSTM-LGNet": ("lstm", False, "lightgcn"),
    "RNN-LGNet": ("gru", False, "lightgcn"),
    "A-LGNet-RNN": ("none", True, "lightgcn"),
    "A-LSTM-LGNet": ("lstm", True, "lightgcn"),
    "ALGNet": ("gru", True, "lightgcn"),
}


@pytest.mark.parametrize("ablation", [*ABLATIONS, FULL_MODEL], ids=lambda a: a.name)
def test_ablation_presets_swap_one_part_only(ablation: Ablation, host: PluginHost) -> None:
    base = validate_config(preset_config("algnet", host=host), host=host)
    config = validate_config(preset_config(ablation.name, host=host), host=host)
    rnn, attention, memory = ABLATION_PARTS[ablation.paper_label]
    model = config.model.build(fake_schema())
    assert isinstance(model, ALGNet)
    assert model.encoder.params.rnn == rnn
    assert hasattr(model.encoder, "attentions") == attention
    assert hasattr(model.encoder, "rnns") == (rnn != "none")
    resolved, base_resolved = config.to_dict(), base.to_dict()
    assert resolved["model"]["memory"]["type"] == memory
    # everything but the encoder's rnn/gamma and the memory is the algnet preset's
    for key in ("rnn", "gamma"):
        resolved["model"]["encoder"].pop(key), base_resolved["model"]["encoder"].pop(key)
    resolved["model"].pop("memory"), base_resolved["model"].pop("memory")
    resolved.pop("name"), base_resolved.pop("name")
    assert resolved == base_resolved


def test_algnet_preset_parameter_count(host: PluginHost) -> None:
    raw = preset_config("algnet", host=host)
    config = validate_config(raw, host=host)
    n = 112
    rng = np.random.default_rng(0)
    schema = DataSchema(
        vocab_sizes={"diagnoses": 1958, "procedures": 1430, "medications": n},
        n_drugs=n,
        ddi_adjacency=(rng.random((n, n)) < 0.05).astype(np.float32),
        cooccurrence_adjacency=(rng.random((n, n)) < 0.3).astype(np.float32),
    )
    model = config.model.build(schema)
    count = sum(p.numel() for p in model.parameters())
    assert count == PRESET_PARAMETERS, count


#: algnet preset on vocabularies 1958 / 1430 / 112 (see README), counted by hand:
# embeddings (1959+1431)*64 = 216,960; GRUs 64->128: 2*3*(64*128 + 128*128 + 2*128) = 148,992;
# attention 2*(qkv 64*1536+1536 + W_O W_P 512*128+128) = 2*(99,840 + 65,664) = 331,008
# (separate_output would add 2*262,656); query 256*64+64 = 16,448; memory 2*112*64 + beta = 14,337;
# output MLP (64+128)*128+128 = 24,704 and 128*112+112 = 14,448
PRESET_PARAMETERS = 766_897


def test_one_epoch_training_run(host: PluginHost, tmp_path: Path) -> None:
    raw = preset_config("algnet", host=host)
    raw.update(device="cpu", dataset=dict(TINY_DATA))
    raw["model"]["hidden_dim"] = 8
    raw["model"]["encoder"].update(SMALL_ENCODER)
    raw["trainer"].update(epochs=1, lr=0.01, batch_size=8, progress="none")
    raw["eval"].update(bootstrap_rounds=2)
    experiment = medtoolkit.build(raw, host=host)
    result = experiment.run(out_dir=tmp_path, progress=False)
    assert 0.0 <= result.metrics["test"]["jaccard"]["mean"] <= 1.0
    assert len(result.metrics["epoch_seconds"]) == 1
    (model,) = result.models.values()
    assert isinstance(model, ALGNet) and isinstance(model.memory, LightGCNMemory)
    assert isinstance(model.encoder, DualSelfAttentionEncoder)


def test_lightgcn_ddi_memory_refuses_a_dataset_without_ddi_matrix() -> None:
    schema = dataclasses.replace(fake_schema(), ddi_adjacency=None)
    with pytest.raises(ValueError, match=r"^memory 'lightgcn' with ddi_in_memory=true \(set it to false\) needs a "
                                         r"DDI matrix, but the dataset has no DDI matrix"):
        LightGCNMemory(LightGCNMemory.Params(), schema, query_dim=4)
    assert LightGCNMemory(LightGCNMemory.Params(ddi_in_memory=False), schema, query_dim=4) is not None
