"""DPR's objectives: ``bpr`` (Eq. 5), ``package_bpr`` (Eq. 15) and ``edge_type`` (Eq. 21, second term).

The L2 penalty ``lambda ||Theta||^2`` of the three equations is the trainer's
``weight_decay``; the sums of the equations are means over the batch's sampled terms (a
batch estimate that keeps the scale independent of the batch size).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from pydantic import Field

from medtoolkit.components.base import Loss, require_extra
from medtoolkit.components.params import Params
from medtoolkit_dpr.names import EDGE_TYPES, PACKAGE_SCORES
from medtoolkit_dpr.sampling import eval_generator, sample_negative_drugs

if TYPE_CHECKING:
    from medtoolkit.data.batching import PaddedBatch


def bpr_terms(scores: torch.Tensor, targets: torch.Tensor, negatives: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """``-log sigmoid(r_pos - r_neg)`` for every positive and each of its sampled negatives.

    Args:
        scores: ``[V, N]`` drug scores ``r`` of real visits.
        targets: ``[V, N]`` 0/1 sets.
        negatives: negatives drawn per positive (:func:`~medtoolkit_dpr.sampling.sample_negative_drugs`).
        generator: the random generator (None: torch's global one).

    Returns:
        ``[S]`` terms (``S`` may be 0).
    """
    rows, positive, negative = sample_negative_drugs(targets, negatives, generator)
    return F.softplus(scores[rows, negative] - scores[rows, positive])


class BPRLoss(Loss):
    """Per-drug BPR (Eq. 5): mean over sampled (visit, positive, negative) of ``-log sigmoid(r_ij - r_il)``.

    For each drug of each real visit's set, ``negatives`` drugs outside the set are drawn
    uniformly with replacement. Visits without a drug, or prescribing every drug, add
    nothing; a batch without any term gives 0. Draws come from torch's global generator in
    training mode and from a generator seeded with ``seed`` in eval mode (the same validation
    value at every call).
    """

    class Params(Params):
        weight: float = Field(1.0, ge=0.0, description="weight of this term in the objective")
        negatives: int = Field(10, ge=1, description="negative drugs drawn per positive drug (the paper: 10)")
        seed: int = Field(0, ge=0, description="seed of the draws in eval mode (deterministic validation loss)")

    params: Params

    def forward(self, logits: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        """Scalar loss from logits ``[B, T, n_drugs]`` and ``batch.medications``."""
        mask = batch.visit_mask
        generator = None if self.training else eval_generator(self.params.seed, logits.device)
        terms = bpr_terms(logits[mask], batch.medications[mask] > 0, self.params.negatives, generator)
        if terms.numel() == 0:
            return logits.sum() * 0.0
        return terms.mean()


class PackageBPRLoss(Loss):
    """Package BPR (Eq. 15): mean over visits and negatives of ``-log sigmoid(s_own - s_other)``.

    Reads the ``package_scores`` extra ``[V, 1 + K]`` (column 0: the visit's own package).
    No visit or no negative column gives 0.
    """

    class Params(Params):
        weight: float = Field(1.0, ge=0.0, description="weight of this term in the objective")

    params: Params

    @classmethod
    def extras_needed(cls, params: Params) -> frozenset[str]:
        return frozenset({PACKAGE_SCORES})

    def forward(  # type: ignore[override]
        self, logits: torch.Tensor, batch: "PaddedBatch", extras: Mapping[str, Any]
    ) -> torch.Tensor:
        """Scalar loss (``logits`` and ``batch`` unused)."""
        scores: torch.Tensor = require_extra(extras, PACKAGE_SCORES, "package_bpr")
        if scores.dim() != 2 or scores.shape[1] < 1:
            raise ValueError(f"package_bpr: package_scores must be [n_visits, 1 + negatives], got {tuple(scores.shape)}")
        if scores.numel() == 0 or scores.shape[1] == 1:
            return scores.sum() * 0.0
        return F.softplus(scores[:, 1:] - scores[:, :1]).mean()


class EdgeTypeLoss(Loss):
    """Edge-type cross-entropy (Eq. 21, second term): ``-log softmax(e_vu^T Q)[R_vu]`` over labelled edges.

    Reads the ``edge_types`` extra ``(logits [E, 3], labels [E])`` (labels 0 no interaction,
    1 synergy, 2 antagonism); the mean over the edges, 0 when there is none.
    """

    class Params(Params):
        weight: float = Field(1.0, ge=0.0, description="weight of this term in the objective")

    params: Params

    @classmethod
    def extras_needed(cls, params: Params) -> frozenset[str]:
        return frozenset({EDGE_TYPES})

    def forward(  # type: ignore[override]
        self, logits: torch.Tensor, batch: "PaddedBatch", extras: Mapping[str, Any]
    ) -> torch.Tensor:
        """Scalar loss (``logits`` and ``batch`` unused)."""
        edge_logits, labels = require_extra(extras, EDGE_TYPES, "edge_type")
        if edge_logits.shape[0] == 0:
            return edge_logits.sum() * 0.0
        return F.cross_entropy(edge_logits, labels)
