"""What a staged run reports about its stages: progress while they train, metrics after.

While a stage runs, :class:`StageProgress` writes a start line and one line per unit to
stderr (with a tqdm bar over a repeated stage's units on a terminal), following the stage's
``trainer.progress``. When every split has run, :func:`staged_metrics` builds the run's
``metrics.json``: the single-stage metrics of the last stage, the history and best epoch of
every stage trained once, and one summary per stage (units trained and skipped, trainable
parameters, best epochs, wall time, test metrics of a scored stage).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medtoolkit.components.base import Task
from medtoolkit.config import RunConfig, StageParams
from medtoolkit.data.ehr import EHRData
from medtoolkit.training.pipeline import combine_splits, run_metrics
from medtoolkit.training.stage_units import Unit

if TYPE_CHECKING:  # the results are the runner's (which imports this module)
    from medtoolkit.training.stages import StagedSplit, StageResult, UnitResult

__all__ = [
    "StageProgress",
    "staged_metrics",
]


# ---------------------------------------------------------------------------- progress
class StageProgress:
    """Progress of a stage on stderr: a start line, then one line per unit (and a bar on a terminal).

    Follows the stage's ``trainer.progress``: ``none`` prints nothing, ``log`` lines only,
    ``bar`` a tqdm bar over the units too, ``auto`` the bar when stderr is a terminal.

    Args:
        stage: the stage's settings.
        position: 0-based position of the stage in the run.
        n_stages: number of stages of the run.
        split: the split's name.
        units: the stage's units on the split.
        quiet: print nothing (re-scoring a run directory).
    """

    def __init__(self, stage: StageParams, position: int, n_stages: int, split: str, units: list[Unit],
                 quiet: bool = False) -> None:
        self.stage, self.units = stage, units
        mode = stage.trainer.progress
        self.quiet = quiet or mode == "none"
        self.bar: Any = None
        if not self.quiet and stage.repeat_per is not None and (
                mode == "bar" or (mode == "auto" and sys.stderr.isatty())):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(units), desc=f"stage {stage.name}", unit="unit", leave=False)
        if not self.quiet:
            unit = units[0]
            what = (f"{len(units)} hospitals" if stage.repeat_per is not None else
                    f"{len(unit.train)} train / {len(unit.val)} val / {len(unit.test)} test patients")
            self.write(f"stage {stage.name} ({position + 1}/{n_stages}), split {split}: {what}")

    def __enter__(self) -> "StageProgress":
        return self

    def __exit__(self, *args: Any) -> None:
        if self.bar is not None:
            self.bar.close()

    def write(self, message: str) -> None:
        """Print one line on stderr (above the bar, when there is one)."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def unit_done(self, result: UnitResult, path: Path | None) -> None:
        """Advance the bar; report a finished unit of a repeated stage (trained, loaded or skipped).

        Args:
            result: the unit's result.
            path: the unit's model file (None: the run writes no files).
        """
        if self.bar is not None:
            self.bar.update(1)
        unit = result.unit
        if self.quiet or unit.hospital is None:
            return
        history = result.history
        if result.status == "skipped":
            what = "skipped: no training patients (keeps its initial weights)"
        elif result.status == "loaded":
            what = f"loaded from {path.name if path is not None else 'its model file'}"
        else:
            best = f", best epoch {history.best_epoch} of {len(history.epochs)}" if history.epochs else ""
            what = f"trained on {len(unit.train)} patients ({len(unit.val)} val){best}"
        self.write(f"stage {self.stage.name}: hospital {unit.position + 1}/{unit.count} (id {unit.label}): {what}, "
                   f"{result.seconds:.2f} s")


# ---------------------------------------------------------------------------- metrics
def _stage_summary(per_split: dict[str, StageResult]) -> dict[str, Any]:
    """The ``metrics.json`` entry of one stage over the splits it ran on."""
    first = next(iter(per_split.values()))
    stage = first.stage
    units = [r for result in per_split.values() for r in result.units]
    skipped = sorted({r.unit.label for r in units if r.status == "skipped"}, key=lambda t: (len(t), t))
    if stage.repeat_per is None:
        best: dict[str, Any] = {split: result.history.best_epoch for split, result in per_split.items()}
    else:
        best = {split: {r.unit.label: r.history.best_epoch for r in result.units if r.status != "skipped"}
                for split, result in per_split.items()}
    summary: dict[str, Any] = {
        "name": stage.name,
        "repeat_per": stage.repeat_per,
        "init_from": stage.init_from,
        "adapter": None if stage.adapter is None else stage.adapter.type,
        "units": len(units),
        "trained_units": sum(r.status != "skipped" for r in units),
        "skipped_units": skipped,
        "trainable_params": first.trainable_params,
        "total_params": first.total_params,
        "trainable_share": first.trainable_params / first.total_params if first.total_params else 0.0,
        "select_metric": stage.trainer.select_metric,
        "best_epochs": best,
        "seconds": sum(result.seconds for result in per_split.values()),
    }
    tests = {split: result.test for split, result in per_split.items() if result.test is not None}
    if tests:
        summary["test"] = combine_splits(tests)
    return summary


def staged_metrics(
    config: RunConfig, results: dict[str, StagedSplit], data: EHRData, task: Task, device: torch.device,
    plugins: dict[str, str], wall_seconds: float,
) -> dict[str, Any]:
    """``metrics.json`` of a staged run: the last stage's metrics, plus ``stages``.

    The last stage's metrics are :func:`~medtoolkit.training.pipeline.run_metrics` of each
    split's :meth:`~medtoolkit.training.stages.StagedSplit.as_split_result`.
    ``history`` and ``best_epochs`` hold the stages trained once, keyed ``<split>.<stage>``;
    ``epoch_seconds`` every epoch of every unit; ``stages`` one summary per stage (repeated
    stages' best epochs per hospital inside it).
    """
    metrics = run_metrics(config.name, config.model.type, {s: r.as_split_result() for s, r in results.items()},
                          data, task, config.eval, device, plugins, wall_seconds)
    once = [(split, result) for split, staged in results.items() for result in staged.stages
            if result.stage.repeat_per is None]
    metrics["history"] = {f"{split}.{r.stage.name}": r.history.to_json() for split, r in once}
    metrics["best_epochs"] = {f"{split}.{r.stage.name}": r.history.best_epoch for split, r in once}
    metrics["epoch_seconds"] = [e.seconds for staged in results.values() for result in staged.stages
                                for unit in result.units for e in unit.history.epochs]
    by_stage: dict[str, dict[str, StageResult]] = {}
    for split, staged in results.items():
        for result in staged.stages:
            by_stage.setdefault(result.stage.name, {})[split] = result
    metrics["stages"] = [_stage_summary(by_stage[stage.name]) for stage in config.stages if stage.name in by_stage]
    return metrics
