"""Padded batches: shapes, padding, the +1 index shift, masks, and batch iteration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medtoolkit.data.batching import iterate_batches, make_batch
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.vocab import Vocabulary
from medtoolkit.testing.fake import fake_ehr

RECORDS = [
    [[[0, 2], [1], [0, 1]], [[1], [0, 2], [2]]],
    [[[3], [], [1, 2, 3]]],
    [[[0], [0], [3]], [[2, 3, 1], [1], [0, 3]], [[1], [2], [1]]],
]


@pytest.fixture
def data() -> EHRData:
    vocabularies = {
        DIAGNOSES: Vocabulary(["D0", "D1", "D2", "D3"], DIAGNOSES),
        PROCEDURES: Vocabulary(["P0", "P1", "P2"], PROCEDURES),
        MEDICATIONS: Vocabulary(["M0", "M1", "M2", "M3"], MEDICATIONS),
    }
    return EHRData.from_records(RECORDS, vocabularies, DrugKnowledge.empty(4),
                                hospital=[0, 0, 1, 2, 2, 2])


def test_shapes_padding_and_index_shift(data: EHRData) -> None:
    batch = make_batch(data, [2, 1])
    assert batch.batch_size == 2 and batch.max_visits == 3 and batch.n_visits == 4
    diagnoses = batch.codes[DIAGNOSES]
    assert diagnoses.shape == (2, 3, 3) and diagnoses.dtype == torch.int64
    # codes are vocabulary index + 1, first-seen order kept, 0 pads codes and visits
    assert diagnoses[0].tolist() == [[1, 0, 0], [3, 4, 2], [2, 0, 0]]
    assert diagnoses[1].tolist() == [[4, 0, 0], [0, 0, 0], [0, 0, 0]]
    procedures = batch.codes[PROCEDURES]
    assert procedures.shape == (2, 3, 1)
    assert procedures[1, 0].tolist() == [0]  # a real visit without procedures: all padding
    assert batch.visit_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.patient_index.tolist() == [2, 1]


def test_medications_are_multi_hot_targets(data: EHRData) -> None:
    batch = make_batch(data, [0, 2])
    assert batch.medications.shape == (2, 3, 4) and batch.medications.dtype == torch.float32
    assert batch.medications[0, 0].tolist() == [1, 1, 0, 0]
    assert batch.medications[1, 1].tolist() == [1, 0, 0, 1]
    assert batch.medications[0, 2].sum() == 0  # padding visit
    expected = data.multi_hot(MEDICATIONS, np.array([0, 1]))
    assert np.array_equal(batch.medications[0, :2].numpy(), expected)
    # the code tensor and the target tensor agree
    meds = batch.codes[MEDICATIONS]
    rebuilt = torch.zeros(2, 3, 5).scatter_(2, meds, 1.0)[..., 1:]
    assert torch.equal(rebuilt, batch.medications)


def test_hospital_grid_and_vocabulary_subset(data: EHRData) -> None:
    batch = make_batch(data, [1, 2], vocabularies=[DIAGNOSES])
    assert set(batch.codes) == {DIAGNOSES}
    assert batch.hospital.tolist() == [[1, 0, 0], [2, 2, 2]]
    assert make_batch(fake_ehr(n_patients=3), [0, 1]).hospital is None


def test_to_moves_every_tensor(data: EHRData) -> None:
    moved = make_batch(data, [0]).to("cpu")
    assert moved.codes[DIAGNOSES].device.type == "cpu" and moved.hospital is not None
    assert torch.equal(moved.visit_mask, make_batch(data, [0]).visit_mask)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("sort_by_length", [False, True])
def test_iterate_batches_covers_each_patient_once(shuffle: bool, sort_by_length: bool) -> None:
    data = fake_ehr(n_patients=23, max_visits=5)
    patients = np.arange(3, 23)
    batches = list(iterate_batches(data, patients, batch_size=6, shuffle=shuffle, sort_by_length=sort_by_length,
                                   generator=np.random.default_rng(1)))
    assert sorted(b.batch_size for b in batches) == [2, 6, 6, 6]
    seen = np.concatenate([b.patient_index.numpy() for b in batches])
    assert sorted(seen.tolist()) == patients.tolist()
    if not shuffle and not sort_by_length:
        assert seen.tolist() == patients.tolist()
    if sort_by_length and not shuffle:
        lengths = data.visits_per_patient[seen]
        assert np.all(np.diff(lengths) >= 0)
    assert sum(b.n_visits for b in batches) == int(data.visits_per_patient[patients].sum())


def test_iterate_batches_shuffle_is_reproducible() -> None:
    data = fake_ehr(n_patients=30)
    def order(seed: int) -> list[int]:
        batches = iterate_batches(data, np.arange(30), 7, shuffle=True, generator=np.random.default_rng(seed))
        return np.concatenate([b.patient_index.numpy() for b in batches]).tolist()
    assert order(5) == order(5) and order(5) != order(6)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        next(iterate_batches(data, np.arange(3), 0))


def test_real_visits_equal_boolean_indexing_and_follow_a_replaced_mask(data: EHRData) -> None:
    batch = make_batch(data, [0, 1, 2])
    logits = torch.randn(*batch.visit_mask.shape, 5)
    assert torch.equal(batch.real_visits(logits), logits[batch.visit_mask])
    assert torch.equal(batch.real_visits(batch.medications), batch.medications[batch.visit_mask])
    assert batch.real_visit_rows() is batch.real_visit_rows()  # cached
    fewer = batch.visit_mask.clone()
    fewer[0] = False
    replaced = dataclasses.replace(batch, visit_mask=fewer)
    assert torch.equal(replaced.real_visits(logits), logits[fewer])
    batch.visit_mask = fewer  # an assigned mask is not served the old rows either
    assert torch.equal(batch.real_visits(logits), logits[fewer])
    fewer[1] = False  # nor a mask changed in place
    assert torch.equal(batch.real_visits(logits), logits[fewer])


def test_sharing_gathers_shares_one_gather_inside_the_block_only(data: EHRData) -> None:
    batch = make_batch(data, [0, 1, 2])
    logits = torch.randn(*batch.visit_mask.shape, 5, requires_grad=True)
    assert batch.real_visits(logits) is not batch.real_visits(logits)  # outside a block: a gather per call
    with batch.sharing_gathers():
        first = batch.real_visits(logits)
        assert batch.real_visits(logits) is first  # shared: one autograd node for every term
        assert torch.equal(first, logits[batch.visit_mask])
        with batch.sharing_gathers():  # a nested block keeps sharing the outer one's gathers
            assert batch.real_visits(logits) is first
        assert batch.real_visits(logits) is first
        with torch.no_grad():  # another gradient mode: its own gather, without history
            detached = batch.real_visits(logits)
            assert detached is not first and not detached.requires_grad
        targets = batch.medications.clone()
        gathered = batch.real_visits(targets)
        targets.add_(1.0)  # changed in place: gathered again, with the new values
        assert torch.equal(batch.real_visits(targets), targets[batch.visit_mask])
        changed = batch.real_visits(targets)
        changed.mul_(0.0)  # a shared result changed in place is not served again
        assert torch.equal(batch.real_visits(targets), targets[batch.visit_mask])
        assert gathered is not changed
        # two terms reading the shared gather give the gradient of both
        (first.sum() + 2 * batch.real_visits(logits).sum()).backward()
    assert torch.equal(logits.grad, 3.0 * batch.visit_mask.unsqueeze(-1).expand_as(logits).float())
    # after the block a second objective over the same logits builds its own graph
    batch.real_visits(logits).sum().backward()
    assert torch.equal(logits.grad, 4.0 * batch.visit_mask.unsqueeze(-1).expand_as(logits).float())
