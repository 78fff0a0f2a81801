"""``ddi``: GAMENet's drug-drug-interaction penalty and its annealed switching rule.

Penalty per visit, with ``p = sigma(o)``: ``p^T A p / N^2`` (``reduction="mean"``, GAMENet's
``mean over N^2 of (p p^T * A_ddi)``, the default) or ``p^T A p`` summed over ordered pairs
(``reduction="sum"``, as SafeDrug and DNMDR eq. 33), averaged over the real visits of the batch.

How it enters the objective (:meth:`DDILoss.combine`; the trainer folds gating losses in
after the additive terms, e.g. ``0.9 * bce + 0.1 * multilabel_margin``):

* ``mode="additive"``: ``total + weight * penalty``.
* ``mode="anneal"`` (GAMENet): compute the predicted DDI rate ``d`` of the batch
  (predicted sets at probability >= ``threshold``; interacting unordered pairs over all
  pairs, pooled over the batch's visits, as the DDI-rate metric). If ``d <= target`` the
  objective is ``total``; otherwise, with probability ``exp((target - d) / T)``, it is
  ``weight * penalty`` *only* (it replaces the prediction loss), else ``total``. ``T``
  starts at ``temperature`` and is multiplied by ``decay`` after every epoch.

Difference from the papers: the reference codes step one visit at a time and decide per
visit (one patient prefix per step); here, by default (``granularity="batch"``), the switch
is decided **once per batch** from the batch's pooled DDI rate. A pooled rate over many
visits is almost always above the target when the data's own rate is (MIMIC-III: 0.08 vs
0.06), so most batches then train on the penalty alone; ``granularity="visit"`` draws one
switch per visit from that visit's own rate, like the papers, and returns
``(1 - f) * total + weight * sum_{switched} penalty_v / V`` (``f`` = share of switched
visits; ``total`` is a batch mean, so the switched visits' share of it is removed uniformly
rather than exactly theirs). The draws use a ``torch.Generator`` seeded with ``seed``
(reproducible, unlike the SafeDrug-repo copy's unseeded numpy draw); the temperature and
the generator state are part of ``state_dict()`` so a resumed run continues the schedule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import Field

from medtoolkit.components.base import Loss
from medtoolkit.components.params import Params

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch


def ddi_penalty(
    probabilities: torch.Tensor,
    adjacency: torch.Tensor,
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """DDI penalty per row: ``p^T A p``, summed over ordered pairs or averaged over ``N^2``.

    * ``"mean"`` (GAMENet): ``mean_{i,j} p_i p_j A_ij = p^T A p / N^2``.
    * ``"sum"`` (SafeDrug, DNMDR eq. 33): ``sum_{i,j} p_i p_j A_ij = p^T A p``; each
      interacting unordered pair counts twice, once per order, since ``A`` is symmetric.

    Args:
        probabilities: ``[V, N]`` drug probabilities.
        adjacency: ``[N, N]`` symmetric 0/1 DDI matrix.
        reduction: ``"mean"`` divides by ``N^2``; ``"sum"`` does not.

    Returns:
        ``[V]`` one penalty per row.

    Raises:
        ValueError: for an unknown ``reduction``.
    """
    quadratic = ((probabilities @ adjacency) * probabilities).sum(-1)
    if reduction == "sum":
        return quadratic
    if reduction == "mean":
        n_drugs = probabilities.shape[-1]
        return quadratic / (n_drugs * n_drugs)
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def visit_pair_counts(predicted: torch.Tensor, adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Interacting and all unordered drug pairs of each predicted set.

    Args:
        predicted: ``[V, N]`` 0/1 predicted sets.
        adjacency: ``[N, N]`` symmetric 0/1 DDI matrix (the diagonal is ignored).

    Returns:
        ``([V] interacting pairs, [V] all pairs)`` in ``adjacency``'s dtype.
    """
    predicted = predicted.to(adjacency.dtype)
    sizes = predicted.sum(-1)
    pairs = sizes * (sizes - 1) / 2
    off_diagonal = adjacency * (1 - torch.eye(adjacency.shape[0], dtype=adjacency.dtype, device=adjacency.device))
    interacting = ((predicted @ off_diagonal) * predicted).sum(-1) / 2
    return interacting, pairs


def rates_from_counts(interacting: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """``[V]`` interacting / all pairs per set, 0 for sets with fewer than two drugs."""
    return torch.where(pairs > 0, interacting / pairs.clamp(min=1), torch.zeros_like(pairs))


def visit_ddi_rates(predicted: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """DDI rate of each predicted set on its own (``ddi_rate_score`` of a single visit).

    Args:
        predicted: ``[V, N]`` 0/1 predicted sets.
        adjacency: ``[N, N]`` symmetric 0/1 DDI matrix (the diagonal is ignored).

    Returns:
        ``[V]`` interacting pairs / pairs per row (0 for rows with fewer than two drugs).
    """
    return rates_from_counts(*visit_pair_counts(predicted, adjacency))


def ddi_pair_counts(predicted: torch.Tensor, adjacency: torch.Tensor) -> tuple[float, float]:
    """Interacting and all unordered drug pairs of predicted sets, summed over the rows.

    Args:
        predicted: ``[V, N]`` 0/1 predicted sets.
        adjacency: ``[N, N]`` symmetric 0/1 DDI matrix (the diagonal is ignored).

    Returns:
        ``(interacting pairs, all pairs)``; their ratio is the pooled DDI rate.
    """
    interacting, pairs = visit_pair_counts(predicted, adjacency)
    return float(interacting.sum()), float(pairs.sum())


def predicted_ddi_rate(predicted: torch.Tensor, adjacency: torch.Tensor) -> float:
    """Pooled DDI rate of predicted sets (SafeDrug ``ddi_rate_score``).

    Args:
        predicted: ``[V, N]`` 0/1 predicted sets.
        adjacency: ``[N, N]`` symmetric 0/1 DDI matrix (the diagonal is ignored).

    Returns:
        interacting unordered pairs / all unordered pairs over all rows (0 without pairs).
    """
    interacting, all_pairs = ddi_pair_counts(predicted, adjacency)
    return interacting / all_pairs if all_pairs else 0.0


class DDIMatrixLoss(Loss):
    """Base of losses that read the data's DDI matrix: needs ``"ddi"``, holds it as a buffer.

    The constructor refuses a schema without a DDI matrix (naming the loss) and registers
    ``ddi_adjacency`` ``[N, N]`` float32 as a non-persistent buffer, so ``.to(device)`` moves it.
    Subclasses set :attr:`name` (their registered name) for that message.
    """

    #: the loss's name in messages (its registered name)
    name: ClassVar[str] = ""

    @classmethod
    def knowledge_needed(cls, params: Params) -> frozenset[str]:
        """The DDI matrix, always."""
        return frozenset({"ddi"})

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        name = self.name or self.registered_name or type(self).__name__
        if schema is None:
            raise ValueError(f"{type(self).__name__} needs a DataSchema (the DDI adjacency)")
        adjacency = torch.as_tensor(schema.require_ddi(f"loss {name!r}"), dtype=torch.float32)
        self.register_buffer("ddi_adjacency", adjacency.clone(), persistent=False)


class DDILoss(DDIMatrixLoss):
    """GAMENet's DDI penalty with simulated-annealing switching (a gating loss).

    ``forward(logits [B, T, N], batch) -> scalar`` is the penalty averaged over real visits;
    :meth:`combine` applies the ``additive`` or ``anneal`` rule. Attributes updated by
    :meth:`combine` for logging: ``last_rate`` (the batch's predicted DDI rate),
    ``last_switched`` (True when the penalty replaced the prediction loss), and the counters
    ``n_penalty_steps`` / ``n_prediction_steps``. :meth:`tracked` gives the epoch's values
    (pooled predicted DDI rate; with ``anneal``, the share of switched decisions and the
    temperature used).
    """

    gating = True
    name = "ddi"

    class Params(Params):
        weight: float = Field(1.0, ge=0.0, description="weight of the penalty")
        target: float = Field(0.06, ge=0.0, le=1.0, description="target DDI rate")
        temperature: float = Field(2.0, gt=0.0, description="initial annealing temperature T0")
        decay: float = Field(0.85, gt=0.0, le=1.0, description="T <- T * decay after every epoch")
        mode: Literal["anneal", "additive"] = Field("anneal", description="how the penalty is combined")
        threshold: float = Field(0.5, gt=0.0, lt=1.0, description="probability threshold of predicted sets")
        seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the annealing draws")
        granularity: Literal["batch", "visit"] = Field(
            "batch", description="anneal: decide the switch once per batch or once per visit"
        )
        reduction: Literal["mean", "sum"] = Field(
            "mean",
            description="penalty per visit: p^T A p / N^2 (mean, GAMENet) or p^T A p over ordered pairs "
            "(sum, SafeDrug/DNMDR)",
        )

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        self.temperature = float(self.params.temperature)
        self.generator = torch.Generator().manual_seed(self.params.seed)
        self.last_rate = 0.0
        self.last_switched = False
        self.n_penalty_steps = 0
        self.n_prediction_steps = 0
        self.reset_tracking()

    def forward(self, logits: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        """DDI penalty averaged over the real visits (scalar)."""
        mask = batch.visit_mask
        if not bool(mask.any()):
            return logits.sum() * 0.0
        probabilities = torch.sigmoid(logits[mask])
        adjacency = self.ddi_adjacency.to(probabilities.dtype)
        return ddi_penalty(probabilities, adjacency, self.params.reduction).mean()

    def batch_ddi_rate(self, logits: torch.Tensor, batch: "PaddedBatch") -> float:
        """Predicted DDI rate of the batch's real visits (pooled pairs)."""
        interacting, all_pairs = self._batch_pair_counts(logits, batch)
        return interacting / all_pairs if all_pairs else 0.0

    def _batch_pair_counts(self, logits: torch.Tensor, batch: "PaddedBatch") -> tuple[float, float]:
        """:func:`ddi_pair_counts` of the batch's predicted sets (at ``threshold``)."""
        with torch.no_grad():
            probabilities = torch.sigmoid(logits[batch.visit_mask].float())
            predicted = (probabilities >= self.params.threshold).float()
            return ddi_pair_counts(predicted, self.ddi_adjacency.float())

    def reset_tracking(self) -> None:
        """Forget this epoch's pair counts and switch decisions."""
        self._interacting = 0.0
        self._pairs = 0.0
        self._switched = 0
        self._decisions = 0
        self._temperature_used: float | None = None

    def _track(self, interacting: float, pairs: float, switched: int, decisions: int) -> None:
        self._interacting += interacting
        self._pairs += pairs
        self._switched += switched
        self._decisions += decisions

    def tracked(self) -> dict[str, float]:
        """This epoch's values, from the batches :meth:`combine` saw (``{}`` before any).

        * ``ddi_rate``: predicted DDI rate pooled over the epoch's training visits
          (interacting unordered pairs / all pairs, sets at ``threshold``; train mode, so
          with dropout active).
        * ``switched_share`` (``anneal``): share of switch decisions (batches, or visits with
          ``granularity="visit"``) that trained on the penalty.
        * ``temperature`` (``anneal``): the temperature ``T`` used during the epoch.
        """
        if self._decisions == 0:
            return {}
        values = {"ddi_rate": self._interacting / self._pairs if self._pairs else 0.0}
        if self.params.mode == "anneal":
            values["switched_share"] = self._switched / self._decisions
            used = self._temperature_used
            values["temperature"] = float(self.temperature if used is None else used)
        return values

    def switch_probability(self, rate: float) -> float:
        """``exp((target - rate) / T)`` (1 when ``rate <= target``)."""
        if rate <= self.params.target:
            return 1.0
        return math.exp((self.params.target - rate) / self.temperature)

    def combine(
        self, total: torch.Tensor, logits: torch.Tensor, batch: "PaddedBatch",
        extras: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        """Fold the penalty into ``total`` (see the module docstring for the two rules; ``extras`` unused)."""
        if self.params.mode == "additive":
            self.last_switched = False
            interacting, pairs = self._batch_pair_counts(logits, batch)
            self.last_rate = interacting / pairs if pairs else 0.0
            self._track(interacting, pairs, 0, 1)
            return total + self.weight * self(logits, batch)
        self._temperature_used = self.temperature
        if self.params.granularity == "visit":
            return self._combine_per_visit(total, logits, batch)
        interacting, pairs = self._batch_pair_counts(logits, batch)
        rate = interacting / pairs if pairs else 0.0
        self.last_rate = rate
        self.last_switched = False
        if rate > self.params.target:
            draw = float(torch.rand(1, generator=self.generator))
            if draw < self.switch_probability(rate):
                self.last_switched = True
                self.n_penalty_steps += 1
                self._track(interacting, pairs, 1, 1)
                return self.weight * self(logits, batch)
        self.n_prediction_steps += 1
        self._track(interacting, pairs, 0, 1)
        return total

    def _combine_per_visit(self, total: torch.Tensor, logits: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        """Per-visit switch: ``(1 - f) * total + weight * sum_{switched v} penalty_v / V``.

        Visit v switches when its own DDI rate ``d_v > target`` and a uniform draw is below
        ``exp((target - d_v) / T)``; ``f`` is the share of switched visits. ``total`` is a
        batch mean, so the switched visits' share of the prediction loss is removed
        uniformly (an approximation of dropping exactly their terms).
        """
        mask = batch.visit_mask
        n_visits = int(mask.sum())
        if n_visits == 0:
            self.last_switched = False
            return total
        probabilities = torch.sigmoid(logits[mask])
        adjacency = self.ddi_adjacency.to(probabilities.dtype)
        with torch.no_grad():
            predicted = (probabilities.float() >= self.params.threshold).float()
            visit_interacting, visit_pairs = visit_pair_counts(predicted, self.ddi_adjacency.float())
            rates = rates_from_counts(visit_interacting, visit_pairs)
            interacting, pairs = float(visit_interacting.sum()), float(visit_pairs.sum())
            self.last_rate = interacting / pairs if pairs else 0.0
            draws = torch.rand(n_visits, generator=self.generator).to(rates.device)
            chance = torch.exp((self.params.target - rates) / self.temperature)
            switched = (rates > self.params.target) & (draws < chance)
        n_switched = int(switched.sum())
        self._track(interacting, pairs, n_switched, n_visits)
        self.last_switched = n_switched > 0
        self.n_penalty_steps += n_switched
        self.n_prediction_steps += n_visits - n_switched
        if n_switched == 0:
            return total
        share = n_switched / n_visits
        penalty = ddi_penalty(probabilities[switched], adjacency, self.params.reduction).sum() / n_visits
        return (1 - share) * total + self.weight * penalty

    def on_epoch_end(self, epoch: int) -> None:
        """``T <- T * decay``."""
        self.temperature *= self.params.decay

    def get_extra_state(self) -> dict[str, Any]:
        """Temperature and generator state (saved in ``state_dict``)."""
        return {"temperature": self.temperature, "generator_state": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.temperature = float(state["temperature"])
        self.generator.set_state(state["generator_state"])
