"""TEMPT's self-supervised pre-training losses: ``masked_code`` (Eq. 5-7) and ``contrastive`` (Eq. 9-10).

Both read named extras of the ``tempt`` recommender (``forward(logits, batch, extras)``) and
ignore the drug logits; Eq. 11's ``L_mask + gamma * L_contrastive`` is the two terms with
weights 1 and ``gamma`` (the preset: 0.01).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from medtoolkit.components.base import Loss, require_extra
from medtoolkit.components.params import Params
from medtoolkit_tempt.masking import MaskedCodes, PairRepresentations
from medtoolkit_tempt.recommender import MASKED_CODES, PAIR_REPRESENTATIONS

if TYPE_CHECKING:
    from medtoolkit.data.batching import PaddedBatch


class MaskedCodeLoss(Loss):
    """Mask prediction (Eq. 5-7): BCE of ``MLP_m(r')`` against the masked codes, per vocabulary.

    For one vocabulary and one visit with a non-empty set: the picked (masked) codes are the
    positives, every code absent from the set is a negative, and the codes the masked view
    still shows unmasked are **not scored** (the model sees them; scoring them would reward
    copying the input instead of inferring the hidden codes). With ``reduction: sum`` (the
    default: Eq. 6 written for the vocabulary's vector, no ``1/|D|``) the BCE terms are summed
    over the scored codes; with ``mean`` they are averaged. The result is averaged over the
    visits (the batch estimate of Eq. 7's sum over records) and summed over the vocabularies
    (``L_d + L_p``).
    """

    class Params(Params):
        weight: float = Field(1.0, ge=0.0, description="weight of this term in the objective")
        reduction: Literal["sum", "mean"] = Field(
            "sum", description="over a visit's scored codes: sum (Eq. 6 as written) or mean"
        )

    params: Params

    @classmethod
    def extras_needed(cls, params: Params) -> frozenset[str]:
        return frozenset({MASKED_CODES})

    def forward(  # type: ignore[override]
        self, logits: torch.Tensor, batch: "PaddedBatch", extras: Mapping[str, Any]
    ) -> torch.Tensor:
        """Scalar ``L_mask`` (see the class docstring; ``logits`` and ``batch`` unused)."""
        per_vocabulary: Mapping[str, MaskedCodes] = require_extra(extras, MASKED_CODES, "masked_code")
        total = logits.new_zeros(())
        for item in per_vocabulary.values():
            terms = F.binary_cross_entropy_with_logits(item.logits, item.targets.to(item.logits.dtype),
                                                       reduction="none")
            scored = item.included.to(terms.dtype)
            per_visit = (terms * scored).sum(dim=1)
            if self.params.reduction == "mean":
                per_visit = per_visit / scored.sum(dim=1).clamp(min=1.0)
            valid = item.valid.to(terms.dtype)
            total = total + (per_visit * valid).sum() / valid.sum().clamp(min=1.0)
        return total


class ContrastiveLoss(Loss):
    """Diagnosis/procedure alignment (Eq. 9-10): symmetric InfoNCE over the batch's visits.

    With ``s_ij = cos(u_d^i, u_p^j) / tau`` over the ``n`` visits having both sets:
    ``L_dp = -1/n sum_i [s_ii - log sum_{j != i} exp(s_ij)]`` (the positive left out of the
    denominator, as Eq. 9's indicator says), ``L_pd`` the same with the roles swapped
    (columns), and the term is ``L_dp + L_pd``. Fewer than two such visits: 0. Can be
    negative (the denominator lacks the positive).
    """

    class Params(Params):
        weight: float = Field(1.0, ge=0.0, description="weight of this term (gamma of Eq. 11; the preset: 0.01)")
        temperature: float = Field(0.8, gt=0.0, description="temperature tau of Eq. 9")

    params: Params

    @classmethod
    def extras_needed(cls, params: Params) -> frozenset[str]:
        return frozenset({PAIR_REPRESENTATIONS})

    def forward(  # type: ignore[override]
        self, logits: torch.Tensor, batch: "PaddedBatch", extras: Mapping[str, Any]
    ) -> torch.Tensor:
        """Scalar ``L_dp + L_pd`` (``logits`` and ``batch`` unused)."""
        pair: PairRepresentations = require_extra(extras, PAIR_REPRESENTATIONS, "contrastive")
        first, second = pair.first[pair.valid], pair.second[pair.valid]
        count = first.shape[0]
        if count < 2:
            return (pair.first.sum() + pair.second.sum()) * 0.0
        similarity = F.normalize(first, dim=-1) @ F.normalize(second, dim=-1).T / self.params.temperature
        positive = similarity.diagonal()
        others = similarity.masked_fill(torch.eye(count, dtype=torch.bool, device=similarity.device), float("-inf"))
        first_to_second = (others.logsumexp(dim=1) - positive).mean()  # L_dp: rows, anchors u_d^i
        second_to_first = (others.logsumexp(dim=0) - positive).mean()  # L_pd: columns, anchors u_p^j
        return first_to_second + second_to_first
