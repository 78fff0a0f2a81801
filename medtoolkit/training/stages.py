"""Staged runs: a run file's ``stages``, trained one after the other on every split.

A stage trains one model (``repeat_per: null``) or one model per hospital
(``repeat_per: hospital``: a *unit* per hospital of the split, trained on that hospital's
training patients, selected on its validation patients, scored on its test patients).
Every unit starts the same way:

1. ``seed_everything(config.seed)`` and build ``config.model`` with the split's schema;
2. load the weights of ``init_from`` (an earlier stage's selected weights; the same
   hospital's when that stage was repeated too). The earlier stage's model is rebuilt
   with the adapters of its own ``init_from`` chain, so its weights fit;
3. make every parameter trainable, attach a freshly built ``adapter`` (which decides what
   trains), then freeze the parameters whose names match a ``freeze`` pattern;
4. train with the stage's ``trainer`` settings and losses
   (:class:`~medtoolkit.training.trainer.Trainer`), then compute the model's fitted state on
   the unit's training patients (:meth:`Recommender.fit_state
   <medtoolkit.components.base.Recommender.fit_state>`) before its weights are kept or saved.

A patient's hospital is the hospital of its first visit. A hospital without training
patients in the split keeps its initial weights (reported in ``skipped_units``). The test
predictions of an evaluated stage (the last one, and those with ``evaluate: true``) are
made by the task (:meth:`Task.predict <medtoolkit.components.base.Task.predict>`) per unit,
concatenated over its units in patient order and scored once by the task, grouped by
hospital when ``eval.group_by`` asks for it.

Files (in the run directory, ``<split>`` the split's name):

* ``model_<split>.<stage>.pt``: a stage trained once: the model's whole ``state_dict``,
  history, config, resume key, data fingerprint, plugin versions; and
  ``checkpoint_<split>.<stage>.pt`` after every epoch, for ``--resume``;
* ``predictions_<split>.csv`` (the last stage) and ``predictions_<split>.<stage>.csv`` (other
  evaluated stages): the task's per-visit table, when it has one
  (:meth:`Task.prediction_table <medtoolkit.components.base.Task.prediction_table>`);
* ``model_<split>.<stage>.h<index>.pt``: one unit of a repeated stage (``index`` the
  hospital index): only the entries of its trainable parameters, those its adapter
  added and its fitted-state buffers, loaded over the initial weights; written when the unit finishes (no per-epoch
  checkpoint: a unit is small and is retrained when it was interrupted).

With ``--resume`` a stage or unit whose model file exists is loaded from it (after checking
the run's resume key and data fingerprint); an unfinished stage trained once resumes from
its checkpoint; unfinished units are retrained.

This module is the runner (:class:`StageRunner`) and its results. The units of a stage are
:mod:`medtoolkit.training.stage_units`, the files :mod:`medtoolkit.training.stage_files`,
the progress lines and ``metrics.json`` :mod:`medtoolkit.training.stage_summary`; their
public names are importable from here too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medtoolkit.components.adapters.common import count_parameters
from medtoolkit.components.base import Recommender, Task, fit_model_state, fitted_state_keys
from medtoolkit.components.schema import DataSchema
from medtoolkit.config import RunConfig, StageParams
from medtoolkit.data.ehr import EHRData
from medtoolkit.training.checkpoint import load_weights
from medtoolkit.training.device import seed_everything
from medtoolkit.training import distributed
from medtoolkit.training.pipeline import SplitResult, task_collate, write_prediction_table
from medtoolkit.training.predict import Predictions, merge_parts, predict_across_ranks
from medtoolkit.training.stage_files import (
    check_stage_file,
    is_stage_file,
    load_unit_entries,
    read_stage_file,
    stage_checkpoint_name,
    stage_model_name,
    write_stage_file,
)
from medtoolkit.training.stage_summary import StageProgress, staged_metrics
from medtoolkit.training.stage_units import Unit, patient_hospitals, stage_units
from medtoolkit.training.trainer import Trainer, TrainingHistory

__all__ = [
    "StageResult",
    "StageRunner",
    "StagedSplit",
    "Unit",
    "UnitResult",
    "check_stage_file",
    "is_stage_file",
    "patient_hospitals",
    "stage_checkpoint_name",
    "stage_model_name",
    "staged_metrics",
    "stage_units",
]

Status = Literal["trained", "loaded", "skipped"]


# ---------------------------------------------------------------------------- results
@dataclass
class UnitResult:
    """One unit of a stage.

    Attributes:
        unit: the unit.
        status: ``trained`` (now), ``loaded`` (from its model file) or ``skipped`` (no
            training patients: initial weights).
        history: its training history (empty when skipped).
        seconds: wall time spent on it in this process.
    """

    unit: Unit
    status: Status
    history: TrainingHistory
    seconds: float


@dataclass
class StageResult:
    """One stage on one split.

    Attributes:
        stage: the stage's settings.
        units: one result per unit.
        trainable_params: parameters (elements) with ``requires_grad`` after the adapter was
            attached and ``freeze`` applied (first trained unit; the first unit when none trained).
        total_params: all parameters of that model.
        seconds: wall time of the stage.
        test: the task's test metrics of the stage (None: not evaluated).
        model: the model of the last unit, with its final weights.
    """

    stage: StageParams
    units: list[UnitResult]
    trainable_params: int
    total_params: int
    seconds: float
    test: dict[str, Any] | None
    model: Recommender

    @property
    def history(self) -> TrainingHistory:
        """The history of a stage trained once (the first unit's)."""
        return self.units[0].history

    @property
    def skipped(self) -> list[str]:
        """Labels of the skipped units."""
        return [r.unit.label for r in self.units if r.status == "skipped"]


@dataclass
class StagedSplit:
    """Every stage of one split.

    Attributes:
        stages: the results, in stage order (in :meth:`StageRunner.run` with
            ``load_only``: only the stages the last one depends on).
        schema: the split's schema.
    """

    stages: list[StageResult]
    schema: DataSchema

    @property
    def test(self) -> dict[str, Any]:
        """The last stage's test metrics: the split's result."""
        final = self.stages[-1].test
        assert final is not None
        return final

    def as_split_result(self) -> SplitResult:
        """The split as a single-stage :class:`SplitResult` (the last stage's test and model)."""
        final = self.stages[-1]
        history = final.history if final.stage.repeat_per is None else TrainingHistory()
        return SplitResult(test=self.test, history=history, model=final.model,
                           select_metric=final.stage.trainer.select_metric,
                           molecules=self.schema.molecule_summary(), statistics=self.schema.statistics_summary())


@dataclass
class _Weights:
    """What a finished stage leaves for the stages starting from it.

    Attributes:
        shared: the whole ``state_dict`` (CPU) of a stage trained once.
        per_hospital: a repeated stage's saved entries per hospital index (None: skipped, so
            the unit's initial weights); kept only when a later stage starts from it.
    """

    shared: dict[str, torch.Tensor] | None = None
    per_hospital: dict[int, dict[str, torch.Tensor] | None] = field(default_factory=dict)


def _cpu_copy(state: dict[str, torch.Tensor], keys: set[str] | None = None) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items() if keys is None or k in keys}


def _merge_predictions(parts: list[Predictions], n_drugs: int, with_hospital: bool) -> Predictions:
    """Concatenate unit predictions in patient order, then visit order (as one ``predict`` call would)."""
    if not parts:
        return Predictions(np.zeros((0, n_drugs), np.float32), np.zeros((0, n_drugs), bool),
                           np.zeros(0, np.int64), np.zeros(0, np.int64),
                           np.zeros(0, np.int64) if with_hospital else None)
    merged = merge_parts(parts)
    order = np.lexsort((merged.visit_position, merged.visit_patient))
    return Predictions(
        probabilities=merged.probabilities[order], targets=merged.targets[order],
        visit_patient=merged.visit_patient[order], visit_position=merged.visit_position[order],
        visit_hospital=merged.visit_hospital[order] if with_hospital and merged.visit_hospital is not None else None,
    )


# ---------------------------------------------------------------------------- the runner
class StageRunner:
    """Trains (or loads) every stage of a run on one split.

    Args:
        config: the validated run config (``config.stages`` not empty).
        data: the prepared dataset.
        split: the split (``name``, ``train``, ``val``, ``test``).
        schema: ``task.build_schema(data, split)``.
        task: scores the test predictions.
        device: where to train and predict.
        out: the run directory (None: no files are read or written).
        saved: what the files carry: ``config`` (plain data), ``resume_key``,
            ``data_fingerprint``, ``plugins``.
        resume: load finished stages and units from their files, resume an unfinished
            stage from its checkpoint.
        load_only: never train: load the last stage (and the stages it starts from) from
            their files (re-scoring a run directory; a missing file is an error).
    """

    def __init__(
        self, config: RunConfig, data: EHRData, split: Any, schema: DataSchema, task: Task, device: torch.device,
        out: Path | None = None, saved: dict[str, Any] | None = None, resume: bool = False, load_only: bool = False,
    ) -> None:
        if not config.stages:
            raise ValueError("a StageRunner needs a config with stages")
        self.config, self.data, self.split, self.schema, self.task = config, data, split, schema, task
        self.device, self.out, self.saved = device, out, saved or {}
        self.resume, self.load_only = resume, load_only
        self.weights: dict[str, _Weights] = {}
        #: stages some later stage starts from (their per-hospital weights are kept)
        self.sources = {stage.init_from for stage in config.stages if stage.init_from}

    # ------------------------------------------------------------------ models
    def attached_model(self, stage: StageParams, hospital: int | None) -> tuple[Recommender, set[str]]:
        """A unit's model before training: init weights, fresh adapter attached, ``freeze`` applied.

        Returns:
            ``(model, saved keys)``: the model (on the CPU) and the ``state_dict`` keys a
            unit file of this stage holds (trainable parameters, keys the adapter added and
            fitted-state buffers, :meth:`Recommender.register_fitted_state
            <medtoolkit.components.base.Recommender.register_fitted_state>`).

        Raises:
            ValueError: the adapter refuses the model, or a ``freeze`` pattern matches no
                parameter (the message names the stage).
        """
        if stage.init_from is None:
            seed_everything(self.config.seed)
            model = self.config.model.build(self.schema)
        else:
            source = self.config.stage(stage.init_from)
            model = self.finished_model(source, hospital if source.repeat_per is not None else None)
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        before = set(model.state_dict())
        if stage.adapter is not None:
            adapter = stage.adapter.build(self.schema)
            try:
                model = adapter.attach(model)
            except (TypeError, ValueError) as error:
                raise ValueError(f"stage {stage.name!r}: adapter {stage.adapter.type!r}: {error}") from error
        named = dict(model.named_parameters())
        for pattern in stage.freeze:
            matched = [name for name in named if fnmatchcase(name, pattern)]
            if not matched:
                shown = ", ".join(list(named)[:8]) + (", ..." if len(named) > 8 else "")
                raise ValueError(f"stage {stage.name!r}: freeze pattern {pattern!r} matches no parameter of "
                                 f"{self.config.model.type!r} (parameters: {shown})")
            for name in matched:
                named[name].requires_grad_(False)
        trainable = {name for name, parameter in named.items() if parameter.requires_grad}
        return model, trainable | (set(model.state_dict()) - before) | fitted_state_keys(model)

    def finished_model(self, stage: StageParams, hospital: int | None) -> Recommender:
        """The model of a finished stage (of one hospital, for a repeated stage) with its weights."""
        model, _ = self.attached_model(stage, hospital)
        weights = self.weights[stage.name]
        where = f"stage {stage.name!r}"
        if stage.repeat_per is None:
            assert weights.shared is not None
            load_weights(model, weights.shared, where)
        elif weights.per_hospital.get(hospital) is not None:
            load_unit_entries(model, weights.per_hospital[hospital], f"{where}, hospital {hospital}")
        return model

    # ------------------------------------------------------------------ files
    def _path(self, stage: StageParams, unit: Unit) -> Path | None:
        return None if self.out is None else self.out / stage_model_name(self.split.name, stage.name, unit.hospital)

    def _read(self, path: Path) -> dict[str, Any]:
        return read_stage_file(path, self.saved, "evaluate" if self.load_only else "resume")

    def _write(self, path: Path, stage: StageParams, unit: Unit, entries: dict[str, torch.Tensor],
               history: TrainingHistory) -> None:
        write_stage_file(path, entries, self.saved, self.split.name, stage.name, history, unit.hospital, unit.label)

    # ------------------------------------------------------------------ one unit
    def _unit(self, stage: StageParams, unit: Unit) -> tuple[Recommender, Status, TrainingHistory, tuple[int, int]]:
        """Train, load or skip one unit; record its weights for later stages."""
        model, keys = self.attached_model(stage, unit.hospital)
        counts = count_parameters(model)
        path = self._path(stage, unit)
        history = TrainingHistory()
        if path is not None and (self.resume or self.load_only) and path.exists():
            state = self._read(path)
            if unit.hospital is None:
                load_weights(model, state["model"], path)
            else:
                load_unit_entries(model, state["model"], path)
            history = TrainingHistory.from_json(state.get("history") or {})
            status: Status = "loaded"
        elif len(unit.train) == 0:
            status = "skipped"
        elif self.load_only:
            raise FileNotFoundError(f"{path} is missing: stage {stage.name!r} did not finish in this run directory")
        else:
            model, history = self._train(stage, unit, model)
            status = "trained"
        weights = self.weights.setdefault(stage.name, _Weights())
        state_now = model.state_dict()
        if unit.hospital is None:
            weights.shared = _cpu_copy(state_now)
        elif stage.name in self.sources:
            weights.per_hospital[unit.hospital] = None if status == "skipped" else _cpu_copy(state_now, keys)
        if status == "trained" and path is not None and distributed.is_main():
            self._write(path, stage, unit, _cpu_copy(state_now, keys if unit.hospital is not None else None), history)
        return model, status, history, counts

    def _train(self, stage: StageParams, unit: Unit, model: Recommender) -> tuple[Recommender, TrainingHistory]:
        losses = [node.build(self.schema) for node in self.config.stage_losses(stage)]
        params = stage.trainer
        if unit.hospital is not None:  # one progress line per unit instead of one per epoch
            params = params.model_copy(update={"progress": "none"})
        collate = task_collate(self.task, self.data, self.split, self.schema, self.config.model.component,
                               self.config.model.params)
        trainer = Trainer(model, losses, params, self.device, seed=self.config.seed,
                          threshold=self.config.eval.threshold, averaging=self.config.eval.averaging,
                          collate=collate)
        checkpoint = None
        if self.out is not None and unit.hospital is None:
            checkpoint = self.out / stage_checkpoint_name(self.split.name, stage.name)
        extra = {"config": self.saved.get("resume_key"), "data_fingerprint": self.saved.get("data_fingerprint"),
                 "plugins": self.saved.get("plugins", {}), "split": self.split.name, "stage": stage.name}
        history = trainer.fit(self.data, unit.train, unit.val, self.schema.ddi_adjacency,
                              checkpoint_path=checkpoint, checkpoint_extra=extra, resume=self.resume)
        fit_model_state(trainer.model, self.data, unit.train, self.schema)
        return trainer.model, history

    # ------------------------------------------------------------------ stages
    def run(self) -> StagedSplit:
        """Every stage in order (with ``load_only``: the last one and those it starts from)."""
        stages = self.config.stages
        needed = {stage.name for stage in stages}
        if self.load_only:
            needed, current = set(), stages[-1]
            while True:
                needed.add(current.name)
                if current.init_from is None:
                    break
                current = self.config.stage(current.init_from)
        if self.data.hospital is None:  # before any training
            repeated = [stage.name for stage in stages if stage.name in needed and stage.repeat_per is not None]
            if repeated:
                stage_units(self.config.stage(repeated[0]), self.split, self.data, self.schema)
        results = []
        for position, stage in enumerate(stages):
            if stage.name not in needed:
                continue
            last = position == len(stages) - 1
            results.append(self.run_stage(stage, position, evaluated=last or (stage.evaluate and not self.load_only)))
        return StagedSplit(results, self.schema)

    def run_stage(self, stage: StageParams, position: int, evaluated: bool) -> StageResult:
        """Train (or load) every unit of ``stage``; score the test predictions when ``evaluated``."""
        started = time.perf_counter()
        units = stage_units(stage, self.split, self.data, self.schema)
        results: list[UnitResult] = []
        predictions: list[Predictions] = []
        counts: tuple[int, int] | None = None
        model: Recommender | None = None
        with StageProgress(stage, position, len(self.config.stages), self.split.name, units,
                           quiet=self.load_only or not distributed.is_main()) as progress:
            for unit in units:
                unit_started = time.perf_counter()
                model, status, history, unit_counts = self._unit(stage, unit)
                if counts is None and (status != "skipped" or unit is units[-1]):
                    counts = unit_counts
                if evaluated and len(unit.test):
                    model.to(self.device)
                    predicted = predict_across_ranks(
                        lambda part: self.task.predict(model, self.data, self.split, part,
                                                       self.config.eval.batch_size, self.device),
                        unit.test, in_parts=self.task.predicts_in_parts)
                    if predicted is not None:  # None on the ranks other than 0
                        predictions.append(predicted)
                result = UnitResult(unit, status, history, time.perf_counter() - unit_started)
                results.append(result)
                progress.unit_done(result, self._path(stage, unit))
        assert model is not None and counts is not None  # a split has patients: at least one unit
        test = None
        if evaluated and distributed.is_main():
            merged = _merge_predictions(predictions, self.data.n_drugs, self.data.hospital is not None)
            test = self.task.evaluate(merged.probabilities, merged.targets, merged.visit_patient, self.schema,
                                      self.config.eval, visit_group=merged.visit_hospital)
            if self.out is not None:
                last = stage.name == self.config.stages[-1].name
                suffix = "" if last else f".{stage.name}"
                write_prediction_table(self.task, self.out / f"predictions_{self.split.name}{suffix}.csv")
        return StageResult(stage, results, counts[0], counts[1], time.perf_counter() - started, test, model)
