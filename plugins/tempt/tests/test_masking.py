"""BERT-style masking of code sets: rates, guarantees, targets by hand."""

from __future__ import annotations

import torch

from medtoolkit_tempt.masking import mask_code_sets, masked_targets


def big_batch(n: int = 4000, length: int = 40, vocab: int = 500) -> torch.Tensor:
    """``n`` sets of ``length`` distinct codes (index + 1), the last 10 % of rows empty."""
    generator = torch.Generator().manual_seed(7)
    codes = torch.stack([torch.randperm(vocab, generator=generator)[:length] + 1 for _ in range(n)])
    codes[int(0.9 * n):] = 0
    return codes


def test_rates_on_a_big_batch() -> None:
    vocab = 500
    codes = big_batch(vocab=vocab)
    view = mask_code_sets(codes, vocab, rate=0.15, generator=torch.Generator().manual_seed(0))
    real = codes > 0
    picked = view.selected.sum().item()
    # 40 codes a set: P(no pick) = 0.85^40 ~ 0.0015, so forced picks barely move the rate
    assert abs(picked / real.sum().item() - 0.15) < 0.005
    shown_as_mask = view.mask_positions.sum().item() / picked
    replaced = (view.selected & (view.inputs != codes)).sum().item() / picked
    unchanged = (view.selected & ~view.mask_positions & (view.inputs == codes)).sum().item() / picked
    assert abs(shown_as_mask - 0.8) < 0.01
    assert abs(replaced - 0.1 * (1 - 1 / vocab)) < 0.01  # a random code may be the code itself
    assert abs(unchanged - 0.1) < 0.01
    # only picked codes change; replacements are codes of the same vocabulary
    assert bool((view.inputs[~view.selected] == codes[~view.selected]).all())
    assert bool(view.inputs[real].ge(1).all() and view.inputs.le(vocab).all())
    assert not bool(view.selected[~real].any()) and not bool(view.mask_positions[~real].any())


def test_at_least_one_pick_per_non_empty_set() -> None:
    codes = torch.tensor([[4, 0, 0], [2, 6, 0], [0, 0, 0], [1, 2, 3]])
    for seed in range(20):
        view = mask_code_sets(codes, 6, rate=0.01, generator=torch.Generator().manual_seed(seed))
        picks = view.selected.sum(dim=1)
        assert picks[2] == 0 and bool((picks[[0, 1, 3]] >= 1).all())
        assert bool(view.selected[0, 0])  # the only code of a one-code set is always picked


def test_same_generator_same_masks() -> None:
    codes = big_batch(n=50)
    first = mask_code_sets(codes, 500, generator=torch.Generator().manual_seed(3))
    second = mask_code_sets(codes, 500, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first.inputs, second.inputs) and torch.equal(first.selected, second.selected)
    assert torch.equal(first.mask_positions, second.mask_positions)


def test_targets_by_hand() -> None:
    # set {1, 2, 3} (codes + 1 = 2, 3, 4) with code 2 picked; set {4} with 4 picked; empty set
    codes = torch.tensor([[2, 3, 4], [5, 0, 0], [0, 0, 0]])
    selected = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    targets, included = masked_targets(codes, selected, vocab_size=6)
    assert targets.tolist() == [[0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0], [0] * 6]
    # visible codes 1 and 3 of the first set are not scored; everything else is
    assert included.tolist() == [
        [True, False, True, False, True, True],
        [True] * 6,
        [True] * 6,
    ]
