"""The steps every run shares: train one split and score it, assemble ``metrics.json``, write the report.

:meth:`medtoolkit.experiment.Experiment.run` (from a config) and
:func:`medtoolkit.fit.fit_evaluate` (from objects built in Python) both go through here,
so a model trained either way gives the same numbers and the same report directory.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from medtoolkit.components.base import Loss, Recommender, Task, fit_model_state
from medtoolkit.config import EvalParams, TrainerParams
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.data.ehr import EHRData
from medtoolkit.training.checkpoint import save_atomic, write_text_atomic
from medtoolkit.training.report import curves_title, plot_curves, plot_groups, render_report
from medtoolkit.training.predict import predict_across_ranks
from medtoolkit.training.trainer import Trainer, TrainingHistory

METRIC_KEYS = ("jaccard", "prauc", "f1", "precision", "recall", "ddi_rate", "avg_drugs")
#: trainer settings that may change between an interrupted run and its ``--resume``
RESUME_FREE = ("epochs", "early_stopping_patience", "progress", "num_threads", "prefetch", "find_unused_parameters")


@dataclass
class RunResult:
    """What a run returns: its ``metrics.json`` content, report directory and trained models.

    Attributes:
        metrics: the ``metrics.json`` content.
        out_dir: the report directory (None when nothing was written).
        models: split name -> trained model (best epoch's weights).
    """

    metrics: dict[str, Any]
    out_dir: Path | None
    models: dict[str, Recommender] = field(default_factory=dict)

    @property
    def report_markdown(self) -> str:
        """The ``report.md`` text."""
        return render_report(self.metrics)


@dataclass
class SplitResult:
    """One trained and scored split.

    Attributes:
        test: the task's test metrics of the split.
        history: per-epoch records and the best epoch.
        model: the trained model.
        select_metric: how the best epoch was chosen (the trainer's ``select_metric``).
        molecules: the split schema's ``molecule_summary()`` after training (None when no
            component asked for molecules).
        statistics: the split schema's ``statistics_summary()`` after training (``{name: shape}``
            of the training-split statistics components required; empty when none did).
    """

    test: dict[str, Any]
    history: TrainingHistory
    model: Recommender
    select_metric: str | None = None
    molecules: dict[str, Any] | None = None
    statistics: dict[str, list[int]] = field(default_factory=dict)

    @property
    def n_params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))


def resume_key(config: dict[str, Any]) -> str:
    """What ``--resume`` must find unchanged: the config less its device and run-length settings.

    The run-length settings (:data:`RESUME_FREE`) are left out of the run's ``trainer`` and
    of every stage's ``trainer``.
    """
    comparable = {k: v for k, v in config.items() if k != "device"}
    if isinstance(config.get("trainer"), dict):
        comparable["trainer"] = _resume_trainer(config["trainer"])
    if isinstance(config.get("stages"), list):
        comparable["stages"] = [
            {**stage, "trainer": _resume_trainer(stage["trainer"])}
            if isinstance(stage, dict) and isinstance(stage.get("trainer"), dict) else stage
            for stage in config["stages"]
        ]
    return json.dumps(comparable, sort_keys=True, default=str)


def _resume_trainer(trainer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in trainer.items() if k not in RESUME_FREE}


def task_collate(
    task: Task, data: EHRData, split: Any, schema: Any, recommender: type[Recommender], params: Any,
) -> Callable[[PaddedBatch], PaddedBatch] | None:
    """The trainer's ``collate``: the task's :meth:`~medtoolkit.components.base.Task.collate_fn` for the
    batch items the recommender needs (None when it needs none).

    Args:
        task: the run's task.
        data: the prepared dataset.
        split: the split being trained.
        schema: its schema.
        recommender: the recommender class (``config.model.component``).
        params: its validated params.
    """
    needed = frozenset(recommender.batch_items_needed(params))
    return task.collate_fn(data, split, schema, needed) if needed else None


def write_prediction_table(task: Task, path: Path) -> bool:
    """Write the task's :meth:`~medtoolkit.components.base.Task.prediction_table` as CSV at ``path``.

    Returns:
        whether a table was written (False when the task has none).
    """
    table = task.prediction_table()
    if table is None:
        return False
    write_text_atomic(table.to_csv(index=False), path)
    return True


def train_split(
    model: Recommender,
    losses: list[Loss],
    data: EHRData,
    split: Any,
    schema: Any,
    task: Task,
    trainer_params: TrainerParams,
    eval_params: EvalParams,
    device: torch.device,
    seed: int,
    out: Path | None = None,
    saved: dict[str, Any] | None = None,
    resume: bool = False,
) -> SplitResult:
    """Train ``model`` on ``split``, score it on the split's test patients, save its files.

    After training, the model's fitted state is computed on the split's training patients
    (:meth:`Recommender.fit_state <medtoolkit.components.base.Recommender.fit_state>`, also
    for non-trainable models), then the task predicts (:meth:`Task.predict
    <medtoolkit.components.base.Task.predict>`) and scores the test patients, and
    ``model_<split>.pt`` is written with the fitted state in it, besides
    ``predictions_<split>.csv`` when the task has a :meth:`prediction table
    <medtoolkit.components.base.Task.prediction_table>`. Training and validation batches get
    the task's batch items the recommender needs (:func:`task_collate`). Under data
    parallelism the test predictions are shared between the ranks
    (:func:`~medtoolkit.training.predict.predict_across_ranks`) and only rank 0 scores them
    and writes; the other ranks return an empty ``test``.

    Args:
        model: a freshly built recommender.
        losses: its loss terms.
        data: the dataset.
        split: a split of ``task`` (``train``, ``val``, ``test`` patient indices, ``name``).
        schema: ``task.build_schema(data, split)``.
        task: predicts and scores the test patients.
        trainer_params: trainer settings.
        eval_params: threshold, averaging and bootstrap.
        device: where to train.
        seed: seeds batch shuffling.
        out: report directory for ``checkpoint_<split>.pt`` and ``model_<split>.pt`` (None: none).
        saved: what both files carry besides weights: ``config`` (plain data), ``resume_key``,
            ``data_fingerprint``, ``plugins``.
        resume: continue from ``checkpoint_<split>.pt`` when it exists.
    """
    saved = saved or {}
    trainer = Trainer(model, losses, trainer_params, device, seed=seed,
                      threshold=eval_params.threshold, averaging=eval_params.averaging,
                      collate=task_collate(task, data, split, schema, type(model), model.params))
    common = {"data_fingerprint": saved.get("data_fingerprint"), "plugins": saved.get("plugins", {}),
              "split": split.name}
    history = trainer.fit(
        data, split.train, split.val, schema.ddi_adjacency,
        checkpoint_path=(out / f"checkpoint_{split.name}.pt") if out is not None else None,
        checkpoint_extra={"config": saved.get("resume_key"), **common}, resume=resume,
    )
    fit_model_state(trainer.model, data, split.train, schema)
    predictions = predict_across_ranks(
        lambda part: task.predict(trainer.model, data, split, part, eval_params.batch_size, device),
        split.test, in_parts=task.predicts_in_parts)
    if predictions is None:  # not rank 0: rank 0 scores the gathered predictions and writes the files
        return SplitResult(test={}, history=history, model=trainer.model, select_metric=trainer_params.select_metric)
    test = task.evaluate(predictions.probabilities, predictions.targets, predictions.visit_patient, schema,
                         eval_params, visit_group=predictions.visit_hospital)
    if out is not None:
        write_prediction_table(task, out / f"predictions_{split.name}.csv")
        save_atomic({"model": trainer.model.state_dict(), "config": saved.get("config"), **common},
                    out / f"model_{split.name}.pt")
    return SplitResult(test=test, history=history, model=trainer.model,
                       select_metric=trainer_params.select_metric, molecules=schema.molecule_summary(),
                       statistics=schema.statistics_summary())


def combine_splits(per_split: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One split: its metrics. Several (seeds): mean of means, std over splits.

    A metric whose mean is None (e.g. the DDI rate without a DDI matrix) in every split is
    ``{"mean": None, "std": None}``; splits without a value are left out of the mean.
    Grouped metrics (``groups``, see :mod:`medtoolkit.tasks.grouping`) are combined per
    size bin the same way (:func:`~medtoolkit.tasks.grouping.combine_groups`); the
    per-hospital values stay in each split's entry under ``splits``.
    """
    if len(per_split) == 1:
        return next(iter(per_split.values()))
    from medtoolkit.tasks.grouping import combine_groups

    combined: dict[str, Any] = {}
    for key in METRIC_KEYS:
        means = [m[key]["mean"] for m in per_split.values() if key in m]
        if means:
            present = [v for v in means if v is not None]
            combined[key] = ({"mean": float(np.mean(present)), "std": float(np.std(present))} if present
                             else {"mean": None, "std": None})
    groups = [m["groups"] for m in per_split.values() if m.get("groups")]
    if groups:
        combined["groups"] = combine_groups(groups)
    combined["splits"] = per_split
    return combined


def _peak_memory_mb() -> float:
    # ru_maxrss is in kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_metrics(
    name: str,
    model_type: str,
    results: dict[str, SplitResult],
    data: EHRData,
    task: Task,
    eval_params: EvalParams,
    device: torch.device,
    plugins: dict[str, str],
    wall_seconds: float,
) -> dict[str, Any]:
    """The ``metrics.json`` content of a run (keys: :ref:`metrics.json keys <cli-metrics-json>`).

    ``data.molecules`` is the molecule summary of the first split that built molecules
    (SMILES rdkit could not parse, drugs without a parsed molecule, ...; None when none
    did), ``data.statistics`` the training-split statistics of the first split that computed
    any (``{name: shape}``; present only then) and ``protocol.select_metric`` the trainer's
    ``select_metric`` (None without splits).
    """
    statistics = data.statistics()
    molecules = next((r.molecules for r in results.values() if r.molecules is not None), None)
    select_metric = next((r.select_metric for r in results.values()), None)
    computed = next((r.statistics for r in results.values() if r.statistics), {})
    metrics: dict[str, Any] = {
        "name": name,
        "model": model_type,
        "test": combine_splits({split: result.test for split, result in results.items()}),
        "epoch_seconds": [e.seconds for result in results.values() for e in result.history.epochs],
        "best_epochs": {split: result.history.best_epoch for split, result in results.items()},
        "n_params": list(results.values())[-1].n_params if results else 0,
        "data": {
            "name": data.name,
            "patients": statistics["patients"],
            "visits": statistics["visits"],
            "n_drugs": statistics["n_drugs"],
            "ground_truth_ddi_rate": statistics["ground_truth_ddi_rate"],
            "molecules": molecules,
        },
        "data_fingerprint": data.fingerprint(),
        "protocol": {
            "name": getattr(task.params, "protocol", "?"),
            "splits": list(results),
            "averaging": eval_params.averaging,
            "bootstrap_rounds": eval_params.bootstrap_rounds,
            "bootstrap_fraction": eval_params.bootstrap_fraction,
            "threshold": eval_params.threshold,
            "select_metric": select_metric,
        },
        "device": str(device),
        "plugins": plugins,
        "history": {split: result.history.to_json() for split, result in results.items()},
        "wall_seconds": wall_seconds,
        "peak_memory_mb": _peak_memory_mb(),
    }
    if device.type == "cuda":
        metrics["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if computed:
        metrics["data"]["statistics"] = computed
    return metrics


def write_config(config: dict[str, Any], out: Path, saved: dict[str, Any] | None = None,
                 resume: bool = False) -> None:
    """``config.yaml``: the resolved run config.

    With ``resume``, every ``checkpoint_<split>[.<stage>].pt`` and every stage model file
    (``model_<split>.<stage>[.h<i>].pt``, :mod:`medtoolkit.training.stages`) already in
    ``out`` is checked against ``saved`` (its ``resume_key`` and ``data_fingerprint``) first:
    a refused ``--resume`` leaves the run's ``config.yaml`` as it was (it must keep matching
    the model files).

    Raises:
        ValueError: a checkpoint or stage model file cannot be resumed by this run (nothing
            is written).
    """
    if resume and saved is not None:
        from medtoolkit.training.checkpoint import load_checkpoint
        from medtoolkit.training.stages import check_stage_file, is_stage_file
        from medtoolkit.training.trainer import check_resumable

        expected = {"config": saved.get("resume_key"), "data_fingerprint": saved.get("data_fingerprint")}
        for path in sorted(out.glob("checkpoint_*.pt")):
            check_resumable(load_checkpoint(path), expected, path)
        for path in sorted(out.glob("model_*.pt")):
            if is_stage_file(path):
                check_stage_file(load_checkpoint(path), saved, path)
    write_text_atomic(yaml.safe_dump(config, sort_keys=False), out / "config.yaml")


def write_report(metrics: dict[str, Any], out: Path) -> None:
    """``metrics.json``, ``report.md``, (for models that trained) ``curves.png`` and, with grouped
    test metrics (``eval.group_by: hospital``), ``groups.png``."""
    write_text_atomic(json.dumps(metrics, indent=2), out / "metrics.json")
    write_text_atomic(render_report(metrics), out / "report.md")
    plot_curves(metrics["history"], out / "curves.png", title=curves_title(metrics))
    if (metrics["test"].get("groups") or {}).get("per_bin"):
        plot_groups(metrics["test"], out / "groups.png")
