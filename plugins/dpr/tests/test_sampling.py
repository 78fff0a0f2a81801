"""Negative sampling: drugs outside a set, and other packages of the batch."""

from __future__ import annotations

import torch

from medtoolkit_dpr.sampling import sample_negative_drugs, sample_other_rows, set_groups


def test_negative_drugs_are_outside_the_set_and_rows_without_negatives_are_skipped() -> None:
    torch.manual_seed(1)
    targets = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]]).bool()
    rows, positive, negative = sample_negative_drugs(targets, 5)
    assert rows.tolist() == [0] * 10 + [3] * 5
    assert positive.tolist() == [0] * 5 + [2] * 5 + [1] * 5
    assert not targets[rows, negative].any()
    assert set(negative[rows == 3].tolist()) <= {0, 2, 3}


def test_set_groups_and_other_rows_prefer_a_different_set() -> None:
    torch.manual_seed(0)
    sets = torch.tensor([[1, 0], [0, 1], [1, 0], [1, 1]]).bool()
    groups = set_groups(sets)
    assert groups[0] == groups[2] and len(set(groups.tolist())) == 3
    others = sample_other_rows(groups, 400)
    assert others.shape == (4, 400)
    assert set(others[0].tolist()) == {1, 3} and set(others[2].tolist()) == {1, 3}
    assert set(others[1].tolist()) == {0, 2, 3}
    share = torch.bincount(others[1], minlength=4).float() / 400
    assert torch.allclose(share[[0, 2, 3]], torch.full((3,), 1 / 3), atol=0.08)


def test_other_rows_fall_back_to_every_row_when_all_sets_are_equal() -> None:
    groups = set_groups(torch.ones(3, 2, dtype=torch.bool))
    others = sample_other_rows(groups, 300)
    assert set(others.flatten().tolist()) == {0, 1, 2}
    assert sample_other_rows(groups, 0).shape == (3, 0)
