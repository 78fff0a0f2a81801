"""``previous_visit``: recommend exactly the drugs of the patient's previous visit.

GAMENet's "Nearest" baseline (``baseline_near.py``). Rule-based (``trainable = False``):
logits are ``+20`` for the drugs prescribed at visit ``t - 1`` and ``-20`` otherwise
(probabilities ~1 and ~0). **First visits predict nothing** (all ``-20``): there is no
previous visit. The reference skips patients with a single visit and never scores first
visits, so its numbers (Jaccard 0.469 on the MIMIC-III test split) are over visits t >= 2;
evaluating every visit here includes first visits with an empty prediction (Jaccard 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field

from medtoolkit.components.base import Recommender
from medtoolkit.components.params import Params
from medtoolkit.components.recommenders.logistic_regression import previous_medications

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch


class PreviousVisitRecommender(Recommender):
    """Copies the previous visit's medications: ``forward(batch) -> [B, T, n_drugs]``.

    Has no parameters; a dummy buffer follows ``.to(device)`` so outputs land on the
    module's device and dtype.
    """

    trainable = False

    class Params(Params):
        confidence: float = Field(20.0, gt=0, description="logit magnitude (+ for copied drugs, - otherwise)")

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        self.register_buffer("_device_anchor", torch.zeros(()), persistent=False)

    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """``+confidence`` where visit t - 1 prescribed the drug, ``-confidence`` elsewhere."""
        anchor = self._device_anchor
        previous = previous_medications(batch.medications.to(device=anchor.device, dtype=anchor.dtype))
        confidence = self.params.confidence
        return (previous > 0).to(anchor.dtype) * (2 * confidence) - confidence
