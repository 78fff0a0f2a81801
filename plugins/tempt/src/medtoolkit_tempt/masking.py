"""BERT-style masking of code sets (Sec. 3.3.1) and the extras the pre-training losses read.

:func:`mask_code_sets` picks, per set, each real code with probability ``rate`` (at least one
code of every non-empty set), then shows each picked code as ``[MASK]`` (share
``mask_share``, 80 %), as a uniformly random code *of the same vocabulary* (``random_share``,
10 %; the public code draws it from the other vocabulary) or unchanged (the rest, 10 %).
:func:`masked_targets` gives what the mask-prediction loss (Eq. 5-7) scores: the picked codes
are the positives; the codes the model still sees unmasked (present and not picked) are left
out of the loss (the model could copy them); every other code of the vocabulary is a negative
(a random replacement that is not in the true set among them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MaskedSets:
    """One masked view of ``N`` code sets.

    Attributes:
        inputs: ``[N, L]`` int64 codes after random replacement (index + 1, 0 = padding).
        mask_positions: ``[N, L]`` bool, shown as ``[MASK]``.
        selected: ``[N, L]`` bool, picked for prediction (masked, replaced or unchanged).
    """

    inputs: torch.Tensor
    mask_positions: torch.Tensor
    selected: torch.Tensor


@dataclass
class MaskedCodes:
    """The extra ``masked_codes`` for one vocabulary (read by the ``masked_code`` loss).

    Attributes:
        logits: ``[N, V]`` mask-prediction logits ``MLP_m(r')`` of the ``N`` real visits.
        targets: ``[N, V]`` float 0/1, 1 for the picked (masked) codes of the set.
        included: ``[N, V]`` bool, the entries scored: every code except those the masked
            view still shows unmasked.
        valid: ``[N]`` bool, visits whose set is non-empty (empty sets are not scored).
    """

    logits: torch.Tensor
    targets: torch.Tensor
    included: torch.Tensor
    valid: torch.Tensor


@dataclass
class PairRepresentations:
    """The extra ``pair_representations`` (read by the ``contrastive`` loss, Eq. 8-10).

    Attributes:
        first: ``[N, c]`` projected representations ``u_d`` of the first vocabulary.
        second: ``[N, c]`` projected representations ``u_p`` of the second vocabulary.
        valid: ``[N]`` bool, visits with both sets non-empty (the others are neither
            anchors nor negatives: every empty set has the same representation).
        names: the two vocabularies.
    """

    first: torch.Tensor
    second: torch.Tensor
    valid: torch.Tensor
    names: tuple[str, str]


def mask_code_sets(
    codes: torch.Tensor,
    vocab_size: int,
    rate: float = 0.15,
    mask_share: float = 0.8,
    random_share: float = 0.1,
    generator: torch.Generator | None = None,
) -> MaskedSets:
    """Mask ``N`` code sets BERT-style (see the module docstring).

    Args:
        codes: ``[N, L]`` int64, index + 1, 0 = padding.
        vocab_size: codes of the vocabulary (random replacements are drawn from ``1..V``).
        rate: probability that a real code is picked.
        mask_share: share of picked codes shown as ``[MASK]``.
        random_share: share of picked codes replaced by a random code.
        generator: random source (None: torch's global one); on ``codes``' device.

    Returns:
        the masked view.
    """
    device = codes.device

    def uniform() -> torch.Tensor:
        return torch.rand(codes.shape, generator=generator, device=device)

    real = codes > 0
    selected = real & (uniform() < rate)
    # at least one picked code per non-empty set: a uniformly random real position
    forced = real.any(dim=1) & ~selected.any(dim=1)
    position = uniform().masked_fill(~real, -1.0).argmax(dim=1)
    selected = selected | (forced.unsqueeze(1) & (torch.arange(codes.shape[1], device=device) == position.unsqueeze(1)))
    action = uniform()
    mask_positions = selected & (action < mask_share)
    replace = selected & (action >= mask_share) & (action < mask_share + random_share)
    random_codes = torch.randint(1, vocab_size + 1, codes.shape, generator=generator, device=device)
    inputs = torch.where(replace, random_codes, codes)
    return MaskedSets(inputs=inputs, mask_positions=mask_positions, selected=selected)


def masked_targets(codes: torch.Tensor, selected: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and scored entries of the mask-prediction loss.

    Args:
        codes: ``[N, L]`` the *original* codes (index + 1, 0 = padding).
        selected: ``[N, L]`` bool, the picked positions (:attr:`MaskedSets.selected`).
        vocab_size: ``V``.

    Returns:
        ``targets [N, V]`` float (1: a picked code) and ``included [N, V]`` bool (False for
        the codes left visible: present in the set and not picked).
    """
    n = codes.shape[0]
    real = codes > 0
    picked = torch.zeros(n, vocab_size + 1, dtype=torch.bool, device=codes.device)
    picked.scatter_(1, torch.where(selected, codes, 0), True)  # column 0 collects the rest
    visible = torch.zeros_like(picked)
    visible.scatter_(1, torch.where(real & ~selected, codes, 0), True)
    picked, visible = picked[:, 1:], visible[:, 1:]
    return picked.float(), ~(visible & ~picked)
