"""The batched trainer: many patients per optimizer step, all their visits in one pass.

Named model extras: when a loss term declares extras (:meth:`Loss.extras_needed`), the
trainer calls the model as ``model(batch, extras=names)`` (names sorted) and passes the
returned :class:`~medtoolkit.components.base.ModelOutput`'s extras to every term's
``combine``; otherwise it calls ``model(batch)``. The model is only ever called, never
reached into, so a wrapper (``DistributedDataParallel``) can stand in for it.

Data parallelism (``torchrun``, :mod:`medtoolkit.training.distributed`): when a process
group of more than one process is initialised, the trainer wraps the model and its loss
terms (:class:`TrainingObjective`) in PyTorch's ``DistributedDataParallel`` for the
training step. Every rank cuts the same *global*
batches (``batch_size`` patients, the same shuffling seed) and trains on its contiguous
part of each (rank 0 the first patients), so every rank takes the same number of steps;
a rank whose part is empty (a last batch with fewer patients than ranks) trains on a
copy of one patient with weight 0. Each rank's objective is scaled by
``world_size * local_visits / global_visits``: after DDP averages the gradients over the
ranks, an objective that is a mean over visits has the gradient of the whole global
batch. Validation predictions are cut across the ranks and gathered to rank 0, which
computes the metrics and hands them to every rank (the epoch selection and early
stopping agree); only rank 0 writes checkpoints and prints.

Weight average (``trainer.ema_decay``, :mod:`medtoolkit.training.averaging`): after each
optimizer step an exponential moving average of the trainable weights is updated; each
epoch is validated with it, the best epoch's averaged weights are the ones kept, and the
checkpoint carries it for ``--resume``. Under torchrun every rank keeps the same average.

Denormal floats (``trainer.flush_denormal``, :mod:`medtoolkit.training.denormals`): when
set, training epochs on the CPU run with denormals flushed to zero (the caller's mode is
restored after each epoch).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtoolkit.components.base import Loss, ModelOutput, Recommender
from medtoolkit.config import TrainerParams
from medtoolkit.data.batching import PaddedBatch, batch_chunks, iterate_batches, make_batch
from medtoolkit.data.ehr import EHRData
from medtoolkit.metrics import aggregate, score_visits
from medtoolkit.training.checkpoint import (
    load_checkpoint,
    load_weights,
    resume_key_difference,
    save_atomic,
    state_dict_mismatch,
)
from medtoolkit.training import distributed
from medtoolkit.training.averaging import WeightAverage
from medtoolkit.training.denormals import flushing_denormals
from medtoolkit.training.predict import predict, predict_across_ranks
from medtoolkit.training.prefetch import Prefetcher

log = logging.getLogger("medtoolkit.training")


@dataclass
class EpochRecord:
    """What one epoch produced.

    Attributes:
        epoch: the epoch number (1-based).
        train_loss: mean training loss per batch.
        seconds: training time of the epoch (validation excluded).
        validation: validation metrics (empty without validation patients).
        losses: the values each loss term tracked during the epoch (:meth:`Loss.tracked`),
            keyed by :func:`loss_label` (e.g. ``"1.ddi"``); terms that tracked nothing are
            left out. A term whose params have a numeric ``target`` also carries it (``target``).
    """

    epoch: int
    train_loss: float
    seconds: float
    validation: dict[str, float] = field(default_factory=dict)
    losses: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as plain data (``TrainingHistory.to_json``'s ``epochs`` items)."""
        return {"epoch": self.epoch, "train_loss": self.train_loss, "seconds": self.seconds,
                "validation": self.validation, "losses": self.losses}

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> "EpochRecord":
        """Read :meth:`to_json`'s output back; a record written before ``losses`` existed gets ``{}``.

        Raises:
            KeyError: ``epoch``, ``train_loss`` or ``seconds`` is missing.
        """
        return cls(
            epoch=payload["epoch"],
            train_loss=payload["train_loss"],
            seconds=payload["seconds"],
            validation=dict(payload.get("validation") or {}),
            losses={str(label): dict(values) for label, values in (payload.get("losses") or {}).items()},
        )


def loss_label(index: int, loss: Loss) -> str:
    """The stable key of a loss term in the history: its position in the run's list and its name.

    Args:
        index: 0-based position of the term in the trainer's losses.
        loss: the term.

    Returns:
        ``"<index>.<registered name>"`` (the class name for an unregistered class), e.g. ``"1.ddi"``.
    """
    return f"{index}.{type(loss).registered_name or type(loss).__name__}"


def tracked_values(losses: list[Loss]) -> dict[str, dict[str, float]]:
    """What each loss term tracked during the epoch just finished, as plain floats.

    A term whose params have a numeric ``target`` (and that tracked something) also gets
    ``target``, unless it reports one itself, so that the curves can draw it.

    Args:
        losses: the trainer's loss terms, in order.

    Returns:
        ``{loss_label: {name: value}}`` for the terms whose :meth:`Loss.tracked` is not empty.
    """
    recorded: dict[str, dict[str, float]] = {}
    for index, loss in enumerate(losses):
        values = {str(name): float(value) for name, value in loss.tracked().items()}
        if not values:
            continue
        target = getattr(getattr(loss, "params", None), "target", None)
        if isinstance(target, (int, float)) and not isinstance(target, bool):
            values.setdefault("target", float(target))
        recorded[loss_label(index, loss)] = values
    return recorded


def format_tracked(losses: dict[str, dict[str, float]]) -> str:
    """The tracked values for the per-epoch log line, e.g. ``"1.ddi: ddi_rate=0.0712 temperature=2"``.

    Args:
        losses: an :class:`EpochRecord`'s ``losses``.

    Returns:
        One ``label: name=value ...`` group per term (4 significant digits; the constant
        ``target`` left out), joined by ``"; "``; ``""`` when there is none.
    """
    groups = []
    for label, values in losses.items():
        shown = " ".join(f"{name}={value:.4g}" for name, value in values.items() if name != "target")
        if shown:
            groups.append(f"{label}: {shown}")
    return "; ".join(groups)


@dataclass
class TrainingHistory:
    """Per-epoch records and the selected (best) epoch."""

    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float = -math.inf
    stopped_early: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"epochs": [e.to_json() for e in self.epochs], "best_epoch": self.best_epoch,
                "best_score": self.best_score if math.isfinite(self.best_score) else None,
                "stopped_early": self.stopped_early}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> "TrainingHistory":
        history = cls(
            epochs=[EpochRecord.from_json(e) for e in payload.get("epochs", [])],
            best_epoch=payload.get("best_epoch"),
            best_score=payload["best_score"] if payload.get("best_score") is not None else -math.inf,
            stopped_early=bool(payload.get("stopped_early", False)),
        )
        return history


def compute_loss(
    losses: list[Loss], logits: torch.Tensor, batch: PaddedBatch, extras: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Fold the loss terms: additive terms first, then gating terms (e.g. annealed DDI).

    Args:
        losses: the terms, in the run's order (kept within each group).
        logits: ``[B, T, n_drugs]``.
        batch: the batch the logits are for.
        extras: the model's named extras (:class:`ModelOutput`), passed as ``extras=`` to the
            ``combine`` of the terms that need extras (:meth:`Loss.extras_needed`); the other
            terms are called as ``combine(total, logits, batch)``, so a plugin's three-argument
            ``combine`` keeps working. None when no term needs any.

    Returns:
        the scalar objective.
    """
    total = logits.new_zeros(())
    with batch.sharing_gathers():  # the terms share one gather of the real visits' logits and targets
        for loss in [term for term in losses if not term.gating] + [term for term in losses if term.gating]:
            if loss.extras_needed(loss.params):
                total = loss.combine(total, logits, batch, extras=extras)
            else:
                total = loss.combine(total, logits, batch)
    return total


def extras_needed(losses: list[Loss]) -> tuple[str, ...]:
    """The named model extras any of ``losses`` reads (:meth:`Loss.extras_needed`), sorted.

    Args:
        losses: loss terms (their ``params`` are what they were built with).

    Returns:
        the union of the terms' needs, sorted; ``()`` when no term reads extras.
    """
    needed: set[str] = set()
    for loss in losses:
        needed |= set(loss.extras_needed(loss.params))
    return tuple(sorted(needed))


def run_model(
    model: torch.nn.Module, batch: PaddedBatch, extras: tuple[str, ...] = (),
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Call ``model`` on ``batch`` (asking for ``extras`` when there are any) and split its output.

    Args:
        model: a recommender, or a wrapper around one; only called, never inspected.
        batch: the batch (on the model's device).
        extras: the extras to ask for: ``model(batch, extras=extras)`` when not empty,
            ``model(batch)`` otherwise.

    Returns:
        ``(logits [B, T, n_drugs], extras {name: value})``; a plain tensor output gives
        ``{}``.

    Raises:
        TypeError: the model returned neither a tensor nor a :class:`ModelOutput`.
        ValueError: a requested extra is missing from the output (the message names it).
    """
    output = model(batch, extras=extras) if extras else model(batch)
    if isinstance(output, ModelOutput):
        logits, values = output.logits, dict(output.extras)
    elif isinstance(output, torch.Tensor):
        logits, values = output, {}
    else:
        raise TypeError(f"the model returned a {type(output).__name__}; expected a logits tensor or a ModelOutput")
    missing = [name for name in extras if name not in values]
    if missing:
        raise ValueError(
            f"the model did not return the extras {', '.join(map(repr, missing))} the losses need "
            f"(asked for {list(extras)}, got {sorted(values) or 'none'})"
        )
    return logits, values


def _use_bar(mode: str) -> bool:
    if mode == "bar":
        return True
    if mode == "auto":
        return sys.stderr.isatty()
    return False


class Trainer:
    """Trains a recommender on whole patients per batch.

    Args:
        model: the recommender.
        losses: loss terms (at least one for a trainable model).
        params: trainer settings.
        device: where to train.
        seed: seeds batch shuffling.
        threshold: probability threshold used for validation metrics.
        averaging: validation averaging (``"patient"`` or ``"visit"``).
        collate: adds task-supplied items to every (CPU) batch of :meth:`train_epoch` and
            :meth:`validation_loss` before it moves to ``device``
            (:meth:`Task.collate_fn <medtoolkit.components.base.Task.collate_fn>`); None: none.
    """

    def __init__(
        self,
        model: Recommender,
        losses: list[Loss],
        params: TrainerParams,
        device: torch.device,
        seed: int = 0,
        threshold: float = 0.5,
        averaging: str = "patient",
        collate: Callable[[PaddedBatch], PaddedBatch] | None = None,
    ) -> None:
        #: adds the recommender's batch items to each CPU batch (None: nothing to add)
        self.collate = collate
        #: whether the model trains at all, read once here (the model may be wrapped later)
        self.trainable = bool(getattr(model, "trainable", True))
        if self.trainable and not losses:
            raise ValueError("a trainable model needs at least one loss (run file section 'losses')")
        self.model = model.to(device)
        self.losses = [loss.to(device) for loss in losses]
        #: the extras the model is asked for (:func:`extras_needed` of the losses)
        self.extras = extras_needed(self.losses)
        self.params = params
        self.device = device
        self.seed = seed
        self.threshold = threshold
        self.averaging = averaging
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        trainable += [p for loss in self.losses for p in loss.parameters() if p.requires_grad]
        self.optimizer = (
            # the fused kernel updates all parameters in one pass (much faster than the per-tensor loop)
            torch.optim.Adam(trainable, lr=params.lr, weight_decay=params.weight_decay,
                             fused=device.type in ("cpu", "cuda"))
            if trainable
            else None
        )
        #: the averaged weights (``params.ema_decay``) that validation and selection use; None: off
        self.weight_average = (
            WeightAverage([p for p in self.model.parameters() if p.requires_grad], params.ema_decay)
            if params.ema_decay is not None and self.optimizer is not None else None
        )
        self.use_amp = bool(params.amp and device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.rng = np.random.default_rng(seed)
        #: what the training step calls: the model and its loss terms together
        #: (:class:`TrainingObjective`), in ``DistributedDataParallel`` under torchrun
        self.objective: torch.nn.Module = TrainingObjective(self.model, self.losses, self.extras, self.use_amp)
        if distributed.is_distributed() and self.optimizer is not None:
            self.objective = wrap_data_parallel(self.objective, params.find_unused_parameters)
            # each rank draws its own dropout masks (the model's initial weights came from rank 0)
            torch.manual_seed(seed + 1_000_003 * distributed.rank())

    def _collated(self, batch: PaddedBatch) -> PaddedBatch:
        """``batch`` with the task's items added (unchanged without ``collate``)."""
        return batch if self.collate is None else self.collate(batch)

    # ------------------------------------------------------------------ one epoch
    def rank_batches(self, data: EHRData, patients: np.ndarray) -> list[tuple[np.ndarray, int, float]]:
        """This rank's part of every global batch of the epoch (draws the shuffling from ``self.rng``).

        Args:
            data: the dataset (visit counts).
            patients: the training patients.

        Returns:
            per global batch ``(this rank's patients, global batch size in patients, objective
            scale)``; in one process the batches of :func:`iterate_batches` with scale 1.
        """
        chunks = batch_chunks(data, patients, self.params.batch_size, shuffle=True, generator=self.rng,
                              sort_by_length=True)
        world = distributed.world_size()
        if world == 1:
            return [(chunk, len(chunk), 1.0) for chunk in chunks]
        rank = distributed.rank()
        visits = data.visits_per_patient
        parts = []
        for chunk in chunks:
            mine = np.array_split(chunk, world)[rank]
            if len(mine) == 0:  # fewer patients than ranks: a weightless stand-in keeps the steps aligned
                parts.append((chunk[:1], len(chunk), 0.0))
                continue
            parts.append((mine, len(chunk), world * float(visits[mine].sum()) / float(visits[chunk].sum())))
        return parts

    def train_epoch(self, data: EHRData, patients: np.ndarray, progress: Any = None) -> float:
        """One pass over ``patients``; returns the mean loss per (global) batch.

        Batches are cut :attr:`TrainerParams.prefetch` steps ahead in a background thread
        (pinned on CUDA; by default 2 on CUDA and none on the CPU, where a thread slows the
        step down by competing for the interpreter lock). The step itself never waits for
        the device: the loss is summed on the device and read once at the end of the epoch;
        a non-finite loss stops training at the step on the CPU and at the end of the epoch
        on an accelerator.

        On the CPU with ``trainer.flush_denormal``, denormal floats are flushed to zero during
        the epoch (:func:`~medtoolkit.training.denormals.flushing_denormals`; the mode the
        caller had is restored afterwards).

        Raises:
            FloatingPointError: the loss became NaN or infinite.
        """
        with flushing_denormals(self.params.flush_denormal and self.device.type == "cpu"):
            return self._train_steps(data, patients, progress)

    def _train_steps(self, data: EHRData, patients: np.ndarray, progress: Any) -> float:
        """:meth:`train_epoch`'s loop over this rank's batches (same arguments and result)."""
        assert self.optimizer is not None
        self.model.train()
        pin = self.device.type == "cuda"

        def cut(part: tuple[np.ndarray, int, float]) -> tuple[PaddedBatch, int, float]:
            batch = self._collated(make_batch(data, part[0]))
            return (batch.pin_memory() if pin else batch), part[1], part[2]

        # on the CPU the loss is read every step (no device to wait for): a NaN stops at its step,
        # and the epoch's sum is kept as a Python float (the same float64 additions, fewer operations)
        on_host = self.device.type == "cpu"
        host_total = 0.0
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        steps = 0
        depth = self.params.prefetch if self.params.prefetch is not None else (2 if pin else 0)
        for batch, global_size, scale in Prefetcher(self.rank_batches(data, patients), cut, depth):
            if not on_host:
                batch = batch.to(self.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.objective(batch)
            if scale != 1.0:
                loss = loss * scale
            if on_host:
                value = loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(f"loss became {value} at step {steps}; lower trainer.lr?")
                host_total += value
            self._backward_and_step(loss)
            if not on_host:
                total += loss.detach().double()
                finite &= torch.isfinite(loss.detach())
            steps += 1
            if progress is not None:
                progress.update(global_size)
        if not on_host and distributed.reduce_sum(finite.float().reshape(1)).item() < distributed.world_size():
            raise FloatingPointError("the loss became NaN or infinite during the epoch; lower trainer.lr?")
        if on_host:
            total = torch.tensor(host_total, dtype=torch.float64)
        # the sum over ranks of the scaled losses is world_size times each global batch's loss
        mean = distributed.reduce_sum(total.reshape(1)).item() / distributed.world_size()
        return mean / max(steps, 1)

    def _backward_and_step(self, loss: torch.Tensor) -> None:
        """Backward pass of ``loss``, optional gradient clipping, optimizer step, weight average.

        Without AMP the gradient scaler is off and bypassed (its calls would be identities).
        """
        assert self.optimizer is not None
        scaling = self.scaler.is_enabled()
        (self.scaler.scale(loss) if scaling else loss).backward()
        if self.params.grad_clip is not None:
            if scaling:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.params.grad_clip)
        if scaling:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.weight_average is not None:
            self.weight_average.update()

    def validate(self, data: EHRData, patients: np.ndarray, ddi_adjacency: np.ndarray | None,
                 batch_size: int = 256) -> dict[str, float]:
        """Full (no bootstrap) validation metrics of per-drug predictions.

        Always :func:`~medtoolkit.training.predict.predict`, never the task's
        :meth:`~medtoolkit.components.base.Task.predict`: epochs are selected on per-drug
        metrics (``select_metric``: jaccard, prauc, f1 at the threshold, or the loss), which
        exist for every recommender and task, and the model's fitted state
        (:meth:`~medtoolkit.components.base.Recommender.fit_state`) a task's prediction may
        read is only computed after training.
        """
        predictions = predict_across_ranks(
            lambda part: predict(self.model, data, part, batch_size, self.device), patients)
        metrics = None
        if predictions is not None:  # rank 0 (or the only process)
            scores = score_visits(predictions.targets, predictions.probabilities, self.threshold, ddi_adjacency)
            metrics = aggregate(scores, predictions.visit_patient, self.averaging)
        return distributed.broadcast_object(metrics)

    def validation_loss(self, data: EHRData, patients: np.ndarray, batch_size: int = 256) -> float:
        """The objective's value on ``patients``: what ``select_metric: loss`` minimises.

        Per batch (``batch_size`` patients, in a fixed order), in eval mode without
        gradients: ``sum over every term of weight * term`` with each term's plain value
        (:meth:`Loss.evaluate_term`, extras passed), gating terms included as plain
        weighted terms. No ``combine`` is called, so no switching or annealing decision is
        drawn and nothing is tracked (the built-in ``ddi`` term's ``forward`` is its pure
        penalty). The torch random state is forked and seeded with the trainer's seed, so
        a model or loss that draws at random (masking) sees the same draws every epoch and
        training's random stream is untouched.

        Args:
            data: the dataset.
            patients: validation patient indices (not empty).
            batch_size: patients per batch.

        Returns:
            the mean over batches of the per-batch weighted sum (lower is better).
        """
        modules = [self.model, *self.losses]
        modes = [module.training for module in modules]
        for module in modules:
            module.eval()
        cuda = self.device.type == "cuda"
        devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if cuda else []
        values: list[float] = []
        if distributed.is_distributed():  # each rank its contiguous share; the batch means are pooled below
            patients = np.array_split(np.asarray(patients), distributed.world_size())[distributed.rank()]
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.default_generator.manual_seed(self.seed)
                if cuda:
                    torch.cuda.default_generators[devices[0]].manual_seed(self.seed)
                for batch in iterate_batches(data, patients, batch_size):
                    batch = self._collated(batch).to(self.device, non_blocking=True)
                    with torch.autocast(self.device.type, enabled=self.use_amp):
                        logits, extras = run_model(self.model, batch, self.extras)
                    logits = logits.float()
                    total = sum((loss.weight * loss.evaluate_term(logits, batch, extras) for loss in self.losses),
                                logits.new_zeros(()))
                    values.append(float(total))
        finally:
            for module, mode in zip(modules, modes):
                module.train(mode)
        pooled = distributed.reduce_sum(torch.tensor([float(np.sum(values)), float(len(values))],
                                                     dtype=torch.float64, device=self.device))
        return float(pooled[0] / pooled[1]) if float(pooled[1]) else math.nan

    # ------------------------------------------------------------------ the loop
    def _restore(self, state: dict[str, Any], path: Path) -> tuple["TrainingHistory", dict[str, Any] | None]:
        """Load the optimizer, losses, history and random state of a checkpoint (after the weights).

        Raises:
            ValueError: an entry does not fit this run (the message names ``path``).
        """
        part = "optimizer"
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            part = "losses"
            for loss_term, loss_state in zip(self.losses, state.get("losses") or []):
                loss_term.load_state_dict(loss_state)
            part = "history"
            if not isinstance(state["history"], Mapping) or not isinstance(state["history"].get("epochs"), list):
                raise ValueError("expected a mapping with a list of epochs")
            history = TrainingHistory.from_json(state["history"])
            part = "best_model"
            best_state = state.get("best_model")
            if best_state is not None:
                if not isinstance(best_state, Mapping):
                    raise ValueError(f"expected a state dict, found a {type(best_state).__name__}")
                problem = state_dict_mismatch(self.model.state_dict(), best_state)
                if problem:
                    raise ValueError(problem)
            part = "weight_average"
            if self.weight_average is not None:
                self.weight_average.load_state_dict(state["weight_average"])
            part = "rng_seed"
            self.rng = np.random.default_rng(state["rng_seed"])
            part = "torch_rng"
            if "torch_rng" in state:
                torch.set_rng_state(state["torch_rng"])
            part = "cuda_rng"
            if "cuda_rng" in state and self.device.type == "cuda":  # dropout on the GPU draws from it
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            part = "scaler"
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            if len(reason) > 200:
                reason = reason[:197] + "..."
            raise ValueError(
                f"cannot resume from {path}: its {part!r} entry does not fit this run ({reason}); "
                "use a new --out directory or --overwrite"
            ) from None
        return history, best_state

    def fit(
        self,
        data: EHRData,
        train: np.ndarray,
        val: np.ndarray,
        ddi_adjacency: np.ndarray | None,
        checkpoint_path: Path | None = None,
        checkpoint_extra: dict[str, Any] | None = None,
        resume: bool = False,
        on_epoch: Callable[[EpochRecord], None] | None = None,
    ) -> TrainingHistory:
        """Train for ``params.epochs`` epochs with validation, early stopping and checkpoints.

        The best epoch's weights (by ``params.select_metric`` on ``val``) are loaded into the
        model at the end: the highest validation ``jaccard``/``prauc``/``f1``, or, for
        ``loss``, the lowest validation loss (:meth:`validation_loss`, recorded per epoch
        as ``validation["loss"]`` and computed only then). Without validation patients
        nothing is selected, never on the training loss: the last epoch's weights are kept
        (``best_epoch`` is the last epoch, ``best_score`` stays unset) and early stopping
        never triggers. With ``resume`` and an existing checkpoint the run continues after
        its last finished epoch. With ``params.ema_decay`` every epoch is validated with the
        averaged weights, and the kept weights (best or last) are averaged ones.
        """
        history = TrainingHistory()
        best_state: dict[str, torch.Tensor] | None = None
        start_epoch = 0
        if not self.trainable or self.optimizer is None:
            return history
        if resume and checkpoint_path is not None and checkpoint_path.exists():
            state = load_checkpoint(checkpoint_path)
            check_resumable(state, checkpoint_extra or {}, checkpoint_path)
            load_weights(self.model, state["model"], checkpoint_path)
            history, best_state = self._restore(state, checkpoint_path)
            start_epoch = len(history.epochs)
            log.info("resuming after epoch %d from %s", start_epoch, checkpoint_path)
        patience_left = self.params.early_stopping_patience
        if patience_left is not None:
            # epochs since the best one count against the patience (a resumed run keeps its count)
            patience_left -= len(history.epochs) - (history.best_epoch or 0)
            if patience_left <= 0:  # a resumed run that had already stopped early
                start_epoch = self.params.epochs
        main = distributed.is_main()
        use_bar = _use_bar(self.params.progress) and main
        for epoch in range(start_epoch, self.params.epochs):
            bar = None
            if use_bar:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(train), desc=f"epoch {epoch + 1}/{self.params.epochs}",
                           unit="patient", leave=False)
            for loss_term in self.losses:
                loss_term.reset_tracking()
            set_learning_rate(self.optimizer, epoch_learning_rate(self.params, epoch))
            started = time.perf_counter()
            train_loss = self.train_epoch(data, train, bar)
            seconds = time.perf_counter() - started
            tracked = tracked_values(self.losses)  # once per epoch, before the schedules move on
            for loss_term in self.losses:
                loss_term.on_epoch_end(epoch + 1)
            # a fresh, recorded shuffling seed per epoch makes --resume reproducible
            next_seed = int(self.rng.integers(0, 2**62))
            self.rng = np.random.default_rng(next_seed)
            if bar is not None:
                bar.close()
            with self.averaged_weights():  # validated, selected and kept: the averaged weights, if any
                validation = self.validate(data, val, ddi_adjacency) if len(val) else {}
                if validation and self.params.select_metric == "loss":
                    validation["loss"] = self.validation_loss(data, val)
                score = selection_score(validation, self.params.select_metric) if validation else None
                improved = score is None or score > history.best_score
                if score is not None and improved:
                    best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            record = EpochRecord(epoch + 1, train_loss, seconds, validation, tracked)
            history.epochs.append(record)
            if score is None:  # nothing to select on: the latest weights are the ones kept
                history.best_epoch, best_state = epoch + 1, None
                patience_left = self.params.early_stopping_patience
            elif improved:
                history.best_score, history.best_epoch = score, epoch + 1
                patience_left = self.params.early_stopping_patience
            elif patience_left is not None:
                patience_left -= 1
            if self.params.progress != "none" and main:
                summary = " ".join(f"{k}={'n/a' if v is None else f'{v:.4f}'}" for k, v in validation.items())
                message = (f"epoch {epoch + 1}/{self.params.epochs} loss={train_loss:.4f} "
                           f"({seconds:.1f}s) val: {summary}{' *' if improved else ''}")
                tracked_text = format_tracked(tracked)
                if tracked_text:
                    message += f" | {tracked_text}"
                if use_bar:
                    from tqdm.auto import tqdm

                    tqdm.write(message, file=sys.stderr)
                else:
                    print(message, file=sys.stderr, flush=True)
            if on_epoch is not None:
                on_epoch(record)
            stop = patience_left is not None and patience_left <= 0
            history.stopped_early = stop
            if checkpoint_path is not None and main:
                save_atomic(
                    {
                        "model": self.model.state_dict(),
                        "best_model": best_state,
                        "optimizer": self.optimizer.state_dict(),
                        "losses": [loss_term.state_dict() for loss_term in self.losses],
                        "history": history.to_json(),
                        "rng_seed": next_seed,
                        "torch_rng": torch.get_rng_state(),
                        "scaler": self.scaler.state_dict(),
                        **({"weight_average": self.weight_average.state_dict()} if self.weight_average else {}),
                        **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
                        **(checkpoint_extra or {}),
                    },
                    checkpoint_path,
                )
            if stop:
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        elif self.weight_average is not None and history.epochs:  # no selection: the last averaged weights
            self.weight_average.copy_to_parameters()
        return history

    def averaged_weights(self) -> contextlib.AbstractContextManager[None]:
        """A context in which the model holds the averaged weights (a no-op without ``ema_decay``)."""
        return self.weight_average.applied() if self.weight_average is not None else contextlib.nullcontext()


def selection_score(validation: Mapping[str, float], metric: str) -> float:
    """The score an epoch is selected on (higher is better).

    Args:
        validation: an epoch's validation values (``jaccard``, ``prauc``, ``f1``, ``loss``...).
        metric: the trainer's ``select_metric``.

    Returns:
        ``validation[metric]``, or minus ``validation["loss"]`` for ``loss``; a missing or
        NaN value gives ``-inf`` (never selected).
    """
    value = validation.get(metric)
    if value is None or not math.isfinite(float(value)):
        if value is not None and math.isnan(float(value)):
            log.warning("validation %s is NaN: this epoch cannot be selected", metric)
        return -math.inf
    return -float(value) if metric == "loss" else float(value)


def epoch_learning_rate(params: TrainerParams, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (0-based) under ``params.lr_schedule``.

    ``constant``: ``lr``. ``cosine``: ``lr * (1 + cos(pi * epoch / epochs)) / 2``, from ``lr``
    at the first epoch towards 0 at the last; a function of the epoch index alone, so a
    resumed run continues the same schedule.
    """
    if params.lr_schedule == "constant" or params.epochs <= 0:
        return params.lr
    return params.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / params.epochs))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


#: what a ``checkpoint_<split>.pt`` must hold for ``--resume``
RESUME_STATE = ("model", "optimizer", "history", "rng_seed")


def check_resumable(state: dict[str, Any], expected: dict[str, Any], path: Path) -> None:
    """Refuse to resume from ``state`` unless it is a full checkpoint of this very run.

    Args:
        state: the loaded ``checkpoint_<split>.pt``.
        expected: this run's ``config`` (a :func:`~medtoolkit.training.pipeline.resume_key`
            string) and ``data_fingerprint``; a key given here must be in ``state`` and equal.
        path: the checkpoint file (named in errors).

    Raises:
        ValueError: an entry is missing, or the config or data fingerprint differs.
    """
    lacking = [key for key in (*RESUME_STATE, *(k for k in ("config", "data_fingerprint") if k in expected))
               if state.get(key) is None]
    if lacking:
        raise ValueError(
            f"cannot resume from {path}: it has no {', '.join(lacking)} (not a checkpoint written by "
            "`medtoolkit train`); use a new --out directory or --overwrite"
        )
    for key in ("data_fingerprint", "config"):
        if key in expected and state[key] != expected[key]:
            where = ""
            if key == "config":
                difference = resume_key_difference(state[key], expected[key])
                where = f" at {difference}" if difference else ""
            raise ValueError(
                f"cannot resume from {path}: the checkpoint's {key.replace('_', ' ')} differs from this run's{where} "
                "(different data or settings); use a new --out directory"
            )


class TrainingObjective(torch.nn.Module):
    """The model and its loss terms as one module whose output is the training objective.

    Data parallelism wraps *this* module: DDP then follows the autograd graph back from the
    objective itself (so a model output no term reads, such as the logits of a pre-training
    stage that only reads extras, never leaves parameters waiting for a gradient), and the
    loss terms' own trainable parameters are averaged over the ranks like the model's.

    Args:
        model: the recommender (only called).
        losses: its loss terms, in the run's order.
        extras: the named extras the terms read (:func:`extras_needed`).
        use_amp: run the model under CUDA autocast (the terms always see float32 logits).
    """

    def __init__(self, model: torch.nn.Module, losses: list[Loss], extras: tuple[str, ...], use_amp: bool) -> None:
        super().__init__()
        self.model = model
        self.losses = torch.nn.ModuleList(losses)
        self.extras = extras
        self.use_amp = use_amp

    def forward(self, batch: PaddedBatch) -> torch.Tensor:
        """The scalar objective of ``batch`` (:func:`run_model`, then :func:`compute_loss`)."""
        # without AMP no autocast context is entered at all (it costs time on every step)
        with torch.autocast(batch.visit_mask.device.type) if self.use_amp else contextlib.nullcontext():
            logits, extras = run_model(self.model, batch, self.extras)
        return compute_loss(list(self.losses), logits.float(), batch, extras if self.extras else None)


def wrap_data_parallel(objective: torch.nn.Module, find_unused: bool) -> torch.nn.Module:
    """``objective`` in PyTorch's ``DistributedDataParallel`` for this rank (a process group must exist).

    The inputs are already on the device, so DDP is not asked to move them. Buffers are not
    broadcast from rank 0 before every step (``broadcast_buffers=False``): the models' buffers
    are constants or fitted after training, and the loss terms' buffers hold each rank's own
    counters, which their :meth:`~medtoolkit.components.base.Loss.tracked` sums over the ranks.

    Args:
        objective: a :class:`TrainingObjective` on this rank's device.
        find_unused: some trainable parameter may get no gradient in a step (DDP then
            searches the autograd graph every step, ``find_unused_parameters``).
    """
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(objective, device_ids=None, find_unused_parameters=find_unused,
                                   broadcast_buffers=False)
