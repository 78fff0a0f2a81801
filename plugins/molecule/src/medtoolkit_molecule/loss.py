"""``controllable_ddi``: SafeDrug's controllable loss, a per-visit mix of prediction and DDI terms.

For every real visit ``t`` with logits ``o_t`` (``[N]``), probabilities ``p_t = sigmoid(o_t)``
and multi-hot targets ``y_t`` (reference notes §4.2, l.286-300; plan equations E6-E9):

* E6, DDI term: ``L_ddi,t = gamma * sum_i sum_j A_ij p_ti p_tj`` summed over *ordered*
  pairs, i.e. each interacting pair counts twice for a symmetric ``A`` (SafeDrug's
  ``0.0005 * (p^T p * A).sum()``); ``reduction="mean"`` divides by ``N^2`` instead
  (GAMENet's scale). Both are core :func:`~medtoolkit.components.losses.ddi.ddi_penalty`.
* E7, visit DDI rate: ``P_t = {j : p_tj >= threshold}``; ``d_t`` = interacting unordered
  pairs of ``P_t`` / all unordered pairs of ``P_t`` (0 with fewer than two drugs).
* E8, the controller: ``beta_t = clip(1 - (d_t - target) / kp, 0, 1)``, computed without
  gradient. The public code writes ``min(0, 1 + (target - d_t) / kp)``, which gives 0 for
  ``target < d_t < target + kp`` and a *negative* weight on the prediction loss above
  (gradient ascent on BCE); that bug is not reproduced (reference notes, pitfall 18).
* E9, per-visit loss: ``L_t = beta_t (alpha L_bce,t + (1 - alpha) L_margin,t)
  + (1 - beta_t) L_ddi,t`` with ``L_bce,t`` the mean over the ``N`` drugs of BCE-with-logits
  and ``L_margin,t`` the multi-label margin loss on ``p_t`` (core
  :func:`~medtoolkit.components.losses.margin.multilabel_margin`).

The batch loss is the mean of ``L_t`` over the batch's real visits. The reference steps one
visit at a time, so this is the average of its per-step losses over the same visits.

The loss is self-contained (it contains the prediction terms): do **not** also list ``bce``
or ``multilabel_margin`` in the same run's losses, or they count twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from medtoolkit.components.losses.ddi import DDIMatrixLoss, ddi_penalty, rates_from_counts, visit_pair_counts
from medtoolkit.components.losses.margin import multilabel_margin
from medtoolkit.components.params import Params
from medtoolkit.training import distributed

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch

__all__ = ["ControllableDDILoss", "controller_beta"]


def controller_beta(rates: torch.Tensor, target: float, kp: float) -> torch.Tensor:
    """SafeDrug's weight of the prediction loss, ``clip(1 - (d - target) / kp, 0, 1)`` (E8).

    Args:
        rates: ``[V]`` DDI rates ``d`` of the visits' predicted sets.
        target: the target DDI rate.
        kp: the proportional gain's inverse (> 0): beta reaches 0 at ``d = target + kp``.

    Returns:
        ``[V]`` values in ``[0, 1]``: 1 at ``d <= target``, linear down to 0 at ``target + kp``.
    """
    if kp <= 0:
        raise ValueError(f"kp must be > 0, got {kp}")
    return (1.0 - (rates - target) / kp).clamp(0.0, 1.0)


class ControllableDDILoss(DDIMatrixLoss):
    """SafeDrug's controllable loss (E6-E9): per visit, the DDI rate steers prediction vs. DDI terms.

    ``forward(logits [B, T, N], batch) -> scalar``: the mean over real visits of
    ``beta_t (alpha L_bce,t + (1 - alpha) L_margin,t) + (1 - beta_t) L_ddi,t`` with
    ``beta_t = clip(1 - (d_t - target) / kp, 0, 1)`` from the visit's predicted DDI rate
    ``d_t`` (see the module docstring). Works with any recommender: it reads only the
    logits, ``batch.medications`` and ``batch.visit_mask``, and the schema's DDI matrix.

    It includes the prediction loss, so a run lists it *instead of* ``bce`` and
    ``multilabel_margin``, never beside them.

    :meth:`tracked` reports, for the training steps since :meth:`reset_tracking`: ``beta``
    (mean over visits), ``ddi_rate`` (predicted DDI rate pooled over the visits' pairs, in
    train mode, i.e. with dropout), ``share_beta_below_1`` and the constant ``target``. All
    lie in ``[0, 1]``, so they share one panel of ``curves.png``. Only calls with gradients
    enabled are counted, so evaluation under ``torch.no_grad()`` does not mix in.

    Under data parallelism (:mod:`medtoolkit.training.distributed`): with
    ``granularity="batch"`` the pooled rate that steers beta is computed from the pair
    counts summed over every rank's part of the global batch (in training steps, i.e. with
    gradients enabled; an evaluation without gradients uses this rank's visits, since the
    ranks may evaluate different numbers of batches); ``granularity="visit"`` needs nothing
    global (each visit's beta is its own). :meth:`tracked` sums the counts over the ranks.
    The counts stay on the device until :meth:`tracked`.
    """

    name = "controllable_ddi"

    class Params(Params):
        alpha: float = Field(0.95, ge=0.0, le=1.0, description="BCE share of the prediction loss (margin: 1 - alpha)")
        ddi_weight: float = Field(0.0005, ge=0.0, description="gamma, the scale of the DDI term")
        reduction: Literal["sum", "mean"] = Field(
            "sum", description="DDI term over drug pairs: sum (SafeDrug) or mean over N^2 (GAMENet)"
        )
        target: float = Field(0.06, ge=0.0, le=1.0, description="target DDI rate of a visit's predicted set")
        kp: float = Field(0.05, gt=0.0, description="beta falls from 1 to 0 between target and target + kp")
        threshold: float = Field(0.5, gt=0.0, lt=1.0, description="probability threshold of predicted sets")
        granularity: Literal["visit", "batch"] = Field(
            "visit", description="beta per visit from its own DDI rate (SafeDrug), or one beta per batch (pooled rate)"
        )
        below_target: Literal["prediction", "prediction_plus_ddi"] = Field(
            "prediction",
            description="at d <= target: the prediction loss only (SafeDrug main) or plus the DDI term (archived branch)",
        )
        weight: float = Field(1.0, ge=0.0, description="weight of this term in the objective")

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        # [visits, sum of beta, visits with beta < 1, interacting pairs, all pairs] of this process
        self.register_buffer("_tracking", torch.zeros(5, dtype=torch.float64), persistent=False)
        self.reset_tracking()

    # ------------------------------------------------------------------ per visit
    def visit_terms(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every per-visit quantity of E6-E9 for rows of real visits.

        Args:
            logits: ``[V, N]`` logits of real visits.
            targets: ``[V, N]`` 0/1 multi-hot targets.

        Returns:
            ``[V]`` tensors: ``loss`` (``L_t``), ``beta``, ``rate`` (``d_t``), ``pairs`` (unordered
            pairs of the predicted set), ``bce``, ``margin``, ``ddi`` (``L_ddi,t``, weighted).
            ``beta``, ``rate`` and ``pairs`` carry no gradient.
        """
        p = self.params
        training = torch.is_grad_enabled()  # a training step: every rank computes these terms together
        probabilities = torch.sigmoid(logits)
        adjacency = self.ddi_adjacency.to(probabilities.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none").mean(-1)
        margin = multilabel_margin(probabilities, targets)
        ddi = p.ddi_weight * ddi_penalty(probabilities, adjacency, p.reduction)
        with torch.no_grad():
            predicted = (probabilities.detach().float() >= p.threshold).float()
            interacting, pairs = visit_pair_counts(predicted, self.ddi_adjacency.float())
            rates = rates_from_counts(interacting, pairs)
            # the rate that steers beta: the visit's own, or the batch's pooled rate
            decision = rates
            if p.granularity == "batch":  # pooled over the global batch (all ranks) in training
                pooled = torch.stack([interacting.sum(), pairs.sum()])
                if training:
                    pooled = distributed.reduce_sum(pooled)
                decision = (pooled[0] / pooled[1].clamp(min=1)).expand_as(rates)
            beta = controller_beta(decision, p.target, p.kp).to(logits.dtype)
            below = (decision <= p.target).to(logits.dtype)
        loss = beta * (p.alpha * bce + (1 - p.alpha) * margin) + (1 - beta) * ddi
        if p.below_target == "prediction_plus_ddi":
            loss = loss + below * ddi
        return {"loss": loss, "beta": beta, "rate": rates, "pairs": pairs, "bce": bce, "margin": margin, "ddi": ddi}

    def forward(self, logits: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        """Mean of ``L_t`` over the batch's real visits (a scalar)."""
        mask = batch.visit_mask
        if not bool(mask.any()):
            return logits.sum() * 0.0
        terms = self.visit_terms(logits[mask], batch.medications[mask])
        if torch.is_grad_enabled():
            self._track(terms)
        return terms["loss"].mean()

    # ------------------------------------------------------------------ tracking
    def reset_tracking(self) -> None:
        """Forget the accumulated values (the trainer calls this before every epoch)."""
        self._tracking.zero_()

    def _track(self, terms: dict[str, torch.Tensor]) -> None:
        """Add one batch's values on the device (nothing is read back to the host)."""
        with torch.no_grad():
            beta = terms["beta"].float()
            self._tracking += torch.stack([
                torch.tensor(float(beta.numel()), dtype=torch.float64, device=beta.device),
                beta.sum().double(),
                (beta < 1).sum().double(),
                (terms["rate"] * terms["pairs"]).sum().double(),
                terms["pairs"].sum().double(),
            ])

    def tracked(self) -> dict[str, float]:
        """This epoch's mean ``beta``, pooled predicted ``ddi_rate`` and ``share_beta_below_1``.

        Returns:
            ``{}`` before any training visit was seen; otherwise ``beta``, ``ddi_rate``,
            ``share_beta_below_1`` and the ``target`` (constant; the report draws it as a dashed
            line next to ``ddi_rate``).
        """
        visits, beta_sum, below_one, interacting, pairs = distributed.reduce_sum(self._tracking).tolist()
        if visits == 0:
            return {}
        values = {
            "beta": beta_sum / visits,
            "ddi_rate": interacting / pairs if pairs > 0 else 0.0,
            "share_beta_below_1": below_one / visits,
        }
        values["target"] = float(self.params.target)
        return values
