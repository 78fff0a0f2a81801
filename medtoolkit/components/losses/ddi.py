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
from medtoolkit.training import distributed

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
    return pair_counts_off_diagonal(predicted, off_diagonal_of(adjacency))


def off_diagonal_of(adjacency: torch.Tensor) -> torch.Tensor:
    """``adjacency`` with a zero diagonal (``[N, N]``, same dtype and device)."""
    return adjacency * (1 - torch.eye(adjacency.shape[0], dtype=adjacency.dtype, device=adjacency.device))


def pair_counts_off_diagonal(predicted: torch.Tensor, off_diagonal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`visit_pair_counts` with the diagonal already removed (:func:`off_diagonal_of`).

    Args:
        predicted: ``[V, N]`` 0/1 predicted sets.
        off_diagonal: ``[N, N]`` symmetric 0/1 DDI matrix with a zero diagonal.

    Returns:
        ``([V] interacting pairs, [V] all pairs)`` in ``off_diagonal``'s dtype.
    """
    predicted = predicted.to(off_diagonal.dtype)
    sizes = predicted.sum(-1)
    pairs = sizes * (sizes - 1) / 2
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
    ``last_switched`` (True when the penalty replaced the prediction loss, for any visit with
    ``granularity="visit"``), and the counters ``n_penalty_steps`` / ``n_prediction_steps``
    (this process's decisions). :meth:`tracked` gives the epoch's values (pooled predicted DDI
    rate; with ``anneal``, the share of switched decisions and the temperature used).

    Under data parallelism (:mod:`medtoolkit.training.distributed`) every decision is taken
    from the *global* batch: the batch rate from pair counts summed over the ranks, the
    per-visit switches from the visit rates of all ranks in rank order with one draw per
    global visit (every rank's generator has the same seed and draws the same count, so all
    ranks take the same decisions), and the switched share is the global one. In one process
    those helpers are identities. Counters stay on the logits' device and are read (and
    summed over the ranks) only by :meth:`tracked` and the logging attributes, so
    :meth:`combine` synchronises with the host only for the batch decision (``batch``) or
    for the number of visits to draw for (``visit``).
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
        self.register_buffer("ddi_off_diagonal", off_diagonal_of(self.ddi_adjacency), persistent=False)
        # on the loss's device, read back only when asked for (all whole numbers): this epoch's
        # [interacting pairs, all pairs, switched decisions, decisions] of this process, this
        # process's [switched decisions, decisions] since construction, and the last batch's
        # [interacting pairs, all pairs, switched decisions] (all ranks)
        self.register_buffer("_tracking", torch.zeros(4, dtype=torch.float64), persistent=False)
        self.register_buffer("_steps", torch.zeros(2, dtype=torch.float64), persistent=False)
        self.register_buffer("_last", torch.zeros(3, dtype=torch.float64), persistent=False)
        self.reset_tracking()

    # ------------------------------------------------------------------ logging attributes
    @property
    def last_rate(self) -> float:
        """The last batch's predicted DDI rate (pooled over its visits, all ranks)."""
        interacting, pairs, _ = self._last.tolist()
        return interacting / pairs if pairs else 0.0

    @property
    def last_switched(self) -> bool:
        """Whether the last batch switched to the penalty (any of its visits, per visit)."""
        return bool(self._last[2] > 0)

    @property
    def n_penalty_steps(self) -> int:
        """Decisions (batches, or this process's visits per visit) that trained on the penalty."""
        return int(self._steps[0])

    @property
    def n_prediction_steps(self) -> int:
        """Decisions that kept the prediction loss."""
        switched, decisions = self._steps.tolist()
        return int(decisions - switched)

    def _record(self, step: torch.Tensor, last: torch.Tensor | list[float], count_steps: bool = True) -> None:
        """Add one batch's ``[interacting, pairs, switched, decisions]`` of this process and keep
        the batch's global ``[interacting, pairs, switched]`` (device tensors: nothing is read back)."""
        with torch.no_grad():
            self._tracking += step
            if count_steps:
                self._steps += step[2:]
            if isinstance(last, torch.Tensor):
                self._last.copy_(last)
            else:
                self._last.copy_(torch.tensor(last, dtype=torch.float64))

    # ------------------------------------------------------------------ loss
    def forward(self, logits: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        """DDI penalty averaged over the real visits (scalar)."""
        if batch.n_visits == 0:
            return logits.sum() * 0.0
        probabilities = torch.sigmoid(batch.real_visits(logits))
        adjacency = self.ddi_adjacency.to(probabilities.dtype)
        return ddi_penalty(probabilities, adjacency, self.params.reduction).mean()

    def batch_ddi_rate(self, logits: torch.Tensor, batch: "PaddedBatch") -> float:
        """Predicted DDI rate of the batch's real visits (pooled pairs, this process's visits)."""
        interacting, all_pairs = (float(value) for value in self._batch_pair_counts(logits, batch))
        return interacting / all_pairs if all_pairs else 0.0

    def _predicted(self, probabilities: torch.Tensor) -> torch.Tensor:
        """``[V, N]`` float32 0/1 predicted sets at ``threshold``."""
        return (probabilities.float() >= self.params.threshold).float()

    def _batch_pair_counts(self, logits: torch.Tensor, batch: "PaddedBatch") -> tuple[torch.Tensor, torch.Tensor]:
        """Interacting and all unordered pairs of the batch's predicted sets, summed (0-d tensors)."""
        with torch.no_grad():
            probabilities = torch.sigmoid(batch.real_visits(logits).float())
            interacting, pairs = pair_counts_off_diagonal(self._predicted(probabilities), self.ddi_off_diagonal.float())
            return interacting.sum(), pairs.sum()

    # ------------------------------------------------------------------ tracking
    def reset_tracking(self) -> None:
        """Forget this epoch's pair counts and switch decisions."""
        self._tracking.zero_()
        self._temperature_used: float | None = None

    def tracked(self) -> dict[str, float]:
        """This epoch's values, from the batches :meth:`combine` saw (``{}`` before any).

        Counts are summed over the ranks under data parallelism (every rank calls this at the
        same point of the epoch), so the values are those of the whole epoch.

        * ``ddi_rate``: predicted DDI rate pooled over the epoch's training visits
          (interacting unordered pairs / all pairs, sets at ``threshold``; train mode, so
          with dropout active).
        * ``switched_share`` (``anneal``): share of switch decisions (batches, or visits with
          ``granularity="visit"``) that trained on the penalty.
        * ``temperature`` (``anneal``): the temperature ``T`` used during the epoch.
        """
        interacting, pairs, switched, decisions = distributed.reduce_sum(self._tracking).tolist()
        if decisions == 0:
            return {}
        values = {"ddi_rate": interacting / pairs if pairs else 0.0}
        if self.params.mode == "anneal":
            values["switched_share"] = switched / decisions
            used = self._temperature_used
            values["temperature"] = float(self.temperature if used is None else used)
        return values

    # ------------------------------------------------------------------ combining
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
            interacting, pairs = self._batch_pair_counts(logits, batch)
            step = torch.stack([interacting, pairs, interacting.new_zeros(()), interacting.new_ones(())]).double()
            self._record(step, step[:3], count_steps=False)
            return total + self.weight * self(logits, batch)
        self._temperature_used = self.temperature
        if self.params.granularity == "visit":
            return self._combine_per_visit(total, logits, batch)
        interacting, pairs = self._batch_pair_counts(logits, batch)
        # the decision: from the pair counts of the whole (global) batch, identical on every rank
        global_interacting, global_pairs = distributed.reduce_sum(torch.stack([interacting, pairs])).tolist()
        rate = global_interacting / global_pairs if global_pairs else 0.0
        switched = False
        if rate > self.params.target:
            draw = float(torch.rand(1, generator=self.generator))
            switched = draw < self.switch_probability(rate)
        local = torch.stack([interacting, pairs]).double()
        self._record(torch.cat([local, local.new_tensor([float(switched), 1.0])]),
                     [global_interacting, global_pairs, float(switched)])
        if switched:
            return self.weight * self(logits, batch)
        return total

    def _combine_per_visit(self, total: torch.Tensor, logits: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        """Per-visit switch: ``(1 - f) * total + weight * sum_{switched v} penalty_v / V``.

        Visit v switches when its own DDI rate ``d_v > target`` and a uniform draw is below
        ``exp((target - d_v) / T)``; ``f`` is the share of switched visits. ``total`` is a
        batch mean, so the switched visits' share of the prediction loss is removed
        uniformly (an approximation of dropping exactly their terms).

        Under data parallelism the rates of every rank's visits are gathered in rank order
        (the single-process batch's visit order), one draw is made per global visit, ``f`` is
        the global share, and ``V`` is this rank's visit count (the trainer weights each
        rank's loss by its share of the global visits).
        """
        probabilities = torch.sigmoid(batch.real_visits(logits))  # [V, N], this rank's visits
        n_visits = probabilities.shape[0]
        with torch.no_grad():
            counts = torch.stack(
                pair_counts_off_diagonal(self._predicted(probabilities), self.ddi_off_diagonal.float()), dim=1
            )  # [V, 2]: interacting, all pairs
            every, mine = distributed.gather_rows(counts)  # [V_global, 2], this rank's rows
            n_global = every.shape[0]
            if n_global == 0:
                self._last.zero_()
                return total
            rates = rates_from_counts(every[:, 0], every[:, 1])
            draws = torch.rand(n_global, generator=self.generator).to(rates.device)
            chance = torch.exp((self.params.target - rates) / self.temperature)
            switched_global = (rates > self.params.target) & (draws < chance)  # [V_global]
            switched = switched_global[mine]  # this rank's visits
            n_switched_global = switched_global.sum()
            # [interacting, pairs, switched, 1] per visit, summed: this rank's step; the batch's pooled counts
            step = torch.cat([counts, switched.unsqueeze(1).to(counts.dtype), counts.new_ones(n_visits, 1)], 1)
            self._record(step.sum(0).double(), torch.cat([every.sum(0), n_switched_global.view(1)]))
        keep = (1 - n_switched_global.double() / n_global).to(total.dtype)  # 1 - global switched share
        adjacency = self.ddi_adjacency.to(probabilities.dtype)
        if probabilities.device.type == "cpu":  # only the switched rows (selecting costs no device sync)
            penalty = ddi_penalty(probabilities[switched], adjacency, self.params.reduction).sum()
        else:
            penalty = (ddi_penalty(probabilities, adjacency, self.params.reduction) * switched).sum()
        return keep * total + self.weight * (penalty / max(n_visits, 1))

    def on_epoch_end(self, epoch: int) -> None:
        """``T <- T * decay``."""
        self.temperature *= self.params.decay

    def get_extra_state(self) -> dict[str, Any]:
        """Temperature and generator state (saved in ``state_dict``)."""
        return {"temperature": self.temperature, "generator_state": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.temperature = float(state["temperature"])
        self.generator.set_state(state["generator_state"])
