"""``bce``: binary cross-entropy with logits on the multi-hot medication targets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from pydantic import Field

from medtoolkit.components.base import Loss
from medtoolkit.components.params import Params

if TYPE_CHECKING:
    from medtoolkit.data.batching import PaddedBatch


class BCELoss(Loss):
    """Mean BCE-with-logits over the real visits of a batch and all drugs.

    ``forward(logits [B, T, N], batch) -> scalar``; padding visits are ignored. The mean
    over visits and drugs equals the reference's per-visit ``binary_cross_entropy_with_logits``
    averaged over visits.
    """

    class Params(Params):
        weight: float = Field(1.0, ge=0.0, description="weight of this term in the objective")

    params: Params

    def forward(self, logits: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        if batch.n_visits == 0:
            return logits.sum() * 0.0
        return F.binary_cross_entropy_with_logits(
            batch.real_visits(logits), batch.real_visits(batch.medications).to(logits.dtype)
        )
