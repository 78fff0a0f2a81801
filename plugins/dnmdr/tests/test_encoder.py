"""The ``evolvegat`` visit encoder: conformance, statistics, evolution, exactness of the size groups."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from medtoolkit.components.statistics import code_counts, pair_counts
from medtoolkit.testing import check_component, fake_batch, fake_schema
from medtoolkit_dnmdr.encoder import EvolveGATEncoder, EvolvingWeights

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(embedding_dim=8, hidden_dim=6, output_dim=5, dropout=0.4)
ALL_CHECKS = {"params", "shapes", "state_dict", "device", "determinism", "causality", "gradients"}


@pytest.mark.parametrize("options", [{}, {"conditional_probability": False}, {"evolve": False},
                                     {"medication_state": False, "pooling": "sum", "layers": 1}, {"buckets": 1}])
def test_evolvegat_conforms(options: dict[str, object]) -> None:
    assert set(check_component(EvolveGATEncoder, EvolveGATEncoder.Params(**SMALL, **options))) == ALL_CHECKS


def test_statistics_needed_are_the_counts_of_the_conditional_probabilities() -> None:
    needed = EvolveGATEncoder.statistics_needed(EvolveGATEncoder.Params())
    assert needed == {pair_counts("diagnoses", "medications"), pair_counts("procedures", "medications"),
                      pair_counts("medications", "medications"), code_counts("diagnoses"),
                      code_counts("procedures")}
    assert EvolveGATEncoder.statistics_needed(EvolveGATEncoder.Params(conditional_probability=False)) == set()


def test_conditional_tables_come_from_the_schema_statistics() -> None:
    schema = fake_schema()
    encoder = EvolveGATEncoder(EvolveGATEncoder.Params(**SMALL), schema)
    pairs = schema.require_statistic(pair_counts("diagnoses", "medications"), "test")
    counts = schema.require_statistic(code_counts("diagnoses"), "test")
    i, j = [int(v) for v in torch.nonzero(torch.as_tensor(pairs))[0]]
    assert encoder.given_diagnosis[i + 1, j + 1].item() == pytest.approx(pairs[i, j] / counts[i])
    assert "given_diagnosis" not in encoder.state_dict()  # data, not weights: rebuilt from the schema


def test_without_conditional_probabilities_no_statistic_is_computed() -> None:
    calls: list[str] = []
    schema = fake_schema()
    source = schema.statistics_source
    assert source is not None
    counted = dataclasses.replace(schema, statistics_source=lambda name: calls.append(name) or source(name))
    EvolveGATEncoder(EvolveGATEncoder.Params(**SMALL, conditional_probability=False), counted)
    assert calls == []
    EvolveGATEncoder(EvolveGATEncoder.Params(**SMALL), counted)
    assert len(calls) == 5


def test_evolving_weights_start_at_the_learned_matrix_and_change_over_positions() -> None:
    torch.manual_seed(0)
    evolving = EvolvingWeights(4, evolve=True)
    weights = evolving(3)
    assert weights.shape == (3, 4, 4)
    assert torch.equal(weights[0], evolving.initial)
    assert not torch.allclose(weights[1], weights[0]) and not torch.allclose(weights[2], weights[1])
    static = EvolvingWeights(4, evolve=False)
    assert all(torch.equal(w, static.initial) for w in static(3))
    assert static.cell is None  # no LSTM parameters in the DNMDR_lstm ablation


def test_size_groups_do_not_change_the_result() -> None:
    schema, batch = fake_schema(), fake_batch()
    torch.manual_seed(0)
    one = EvolveGATEncoder(EvolveGATEncoder.Params(**SMALL, buckets=1), schema).eval()
    many = EvolveGATEncoder(EvolveGATEncoder.Params(**SMALL, buckets=5), schema).eval()
    many.load_state_dict(one.state_dict())
    with torch.no_grad():
        mask = batch.visit_mask
        assert torch.allclose(one(batch)[mask], many(batch)[mask], atol=1e-6)


def test_first_visit_ignores_medications_and_second_visit_reads_the_first_visits() -> None:
    schema, batch = fake_schema(), fake_batch()
    encoder = EvolveGATEncoder(EvolveGATEncoder.Params(**SMALL), schema).eval()
    codes = dict(batch.codes)
    medications = codes["medications"].clone()
    medications[:, 0] = torch.where(medications[:, 0] > 0, medications[:, 0] % schema.n_drugs + 1, 0)
    codes["medications"] = medications
    changed = dataclasses.replace(batch, codes=codes)
    with torch.no_grad():
        base, after = encoder(batch), encoder(changed)
    assert torch.allclose(base[:, 0], after[:, 0])
    second = batch.visit_mask[:, 1]
    assert not torch.allclose(base[second, 1], after[second, 1])


def test_missing_vocabulary_is_a_clear_error() -> None:
    schema, batch = fake_schema(), fake_batch()
    encoder = EvolveGATEncoder(EvolveGATEncoder.Params(**SMALL), schema)
    codes = {k: v for k, v in batch.codes.items() if k != "procedures"}
    with pytest.raises(KeyError, match="evolvegat.*procedures"):
        encoder(dataclasses.replace(batch, codes=codes))
