"""``multilabel_margin``: the multi-label hinge loss on sigmoid outputs (GAMENet, SafeDrug)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field

from medtoolkit.components.base import Loss
from medtoolkit.components.params import Params

if TYPE_CHECKING:
    from medtoolkit.data.batching import PaddedBatch


def multilabel_margin(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row multi-label margin loss for scores in ``[0, 1]``, vectorised.

    Equals ``torch.nn.functional.multilabel_margin_loss(scores, index_target,
    reduction="none")`` where ``index_target`` lists the positive indices padded with -1:
    ``sum_{j in T} sum_{i not in T} max(0, 1 - (x_j - x_i)) / N``.

    For ``x`` in ``[0, 1]`` the hinge is never clipped (``x_j - x_i <= 1``, and at equality
    both forms are 0), so the double sum has the closed form
    ``|T| |T^c| - |T^c| sum_{j in T} x_j + |T| sum_{i not in T} x_i`` - O(N) per row
    instead of O(N^2).

    Args:
        scores: ``[V, N]`` values in ``[0, 1]`` (sigmoid outputs).
        targets: ``[V, N]`` 0/1 multi-hot.

    Returns:
        ``[V]`` loss per row.
    """
    targets = targets.to(scores.dtype)
    n_labels = scores.shape[-1]
    n_pos = targets.sum(-1)
    n_neg = n_labels - n_pos
    pos_sum = (scores * targets).sum(-1)
    neg_sum = (scores * (1 - targets)).sum(-1)
    return (n_pos * n_neg - n_neg * pos_sum + n_pos * neg_sum) / n_labels


class MultiLabelMarginLoss(Loss):
    """Multi-label margin loss on ``sigmoid(logits)``, mean over real visits.

    Same value (and gradient wherever defined) as the reference's
    ``F.multilabel_margin_loss(F.sigmoid(logits), index_target)`` per visit, averaged over
    visits, computed for all visits at once in O(V N).
    """

    class Params(Params):
        weight: float = Field(1.0, ge=0.0, description="weight of this term in the objective")

    params: Params

    def forward(self, logits: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        if batch.n_visits == 0:
            return logits.sum() * 0.0
        return multilabel_margin(torch.sigmoid(batch.real_visits(logits)), batch.real_visits(batch.medications)).mean()
