"""An experiment: dataset -> task samples and splits -> model + losses -> training -> bootstrapped test.

Every run writes a report directory: ``config.yaml`` (resolved), ``metrics.json``,
``report.md``, ``curves.png``, and per split ``model_<split>.pt`` (best weights with the
resolved config, plugin versions and data fingerprint) and ``checkpoint_<split>.pt``
(for ``--resume``). A run file with ``stages`` trains them one after the other per split
(:mod:`medtoolkit.training.stages`, which names its files per stage). The directory is
locked while a run writes it, and one that already holds a run is refused unless the run
resumes or overwrites it (:mod:`medtoolkit.training.run_dir`). Training, scoring and report
writing are the steps of :mod:`medtoolkit.training.pipeline`, shared with
:func:`medtoolkit.fit.fit_evaluate` (the same single-stage run from parts built in Python).
"""

from __future__ import annotations

import contextlib
import difflib

import logging
import os
import stat
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from medtoolkit.components.base import Recommender
from medtoolkit.config import (
    ConfigValidationError,
    RunConfig,
    apply_overrides,
    load_yaml,
    parse_override,
    validate_config,
)
from medtoolkit.data.ehr import EHRData
from medtoolkit.training.checkpoint import first_difference, load_checkpoint, load_weights
from medtoolkit.training.device import resolve_device, seed_everything
from medtoolkit.training.pipeline import (
    METRIC_KEYS,
    RunResult,
    SplitResult,
    combine_splits,
    resume_key,
    run_metrics,
    train_split,
    write_config,
    write_report,
)
from medtoolkit.training import distributed
from medtoolkit.training.run_dir import open_run_dir
from medtoolkit.yaml_limits import short_repr
from medtoolkit.training.stages import StagedSplit, StageRunner, staged_metrics

__all__ = ["METRIC_KEYS", "Experiment", "RunResult", "evaluate_run", "resolve_raw_config"]

log = logging.getLogger("medtoolkit")


def resolve_raw_config(config: Any, host: Any) -> tuple[dict[str, Any], str]:
    """A raw config mapping from a mapping, a YAML path or a preset name, and its source name.

    Raises:
        OSError: ``config`` names a path (a link too, even a dangling or looping one) that
            cannot be read; the message names it and the OS error.
        FileNotFoundError: ``config`` is neither an existing path nor a preset; the message
            lists the presets and the plugins kept out by ``MEDTOOLKIT_DISABLE_PLUGINS`` /
            ``MEDTOOLKIT_LOAD_PLUGINS`` (see :meth:`~medtoolkit.plugins.PluginHost.not_loaded_note`).
        ValueError: the path is not a regular file (a FIFO, socket or device).
    """
    if isinstance(config, Mapping):
        return dict(config), "config"
    text = str(config)
    path = Path(text)
    if os.path.lexists(path):  # a dangling link or a link loop: stat() below names the file and the OS error
        _check_readable_file(path, "run file")
        return load_yaml(path), str(path)
    if text in host.registry("preset"):
        from medtoolkit.presets import preset_config

        return preset_config(text, host=host), f"preset {text!r}"
    if text.endswith((".yaml", ".yml")):
        raise FileNotFoundError(f"run file not found: {text}")
    from medtoolkit.registry import name_install_hint

    names = list(host.registry("preset").names())
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
    message = f"{text!r} is neither a run file nor a preset"
    if close:
        message += f"; did you mean {', '.join(map(repr, close))}?"
    if len(names) <= _LISTED_PRESETS:
        message += f"; presets: {', '.join(names)}"
    else:  # a long list would be cut short on the one error line: count them instead
        message += f" ({len(names)} presets: 'medtoolkit presets list' shows them)"
    note = host.not_loaded_note() if callable(getattr(host, "not_loaded_note", None)) else ""
    hint = name_install_hint(text)
    message = f"{message} {note}" if note else message
    raise FileNotFoundError(f"{message}. {hint}" if hint else message)


#: an unknown run name lists the presets when there are at most this many
_LISTED_PRESETS = 12


def _check_readable_file(path: Path, what: str) -> None:
    """Refuse a FIFO, socket or device where a file is expected (reading a FIFO blocks forever)."""
    mode = path.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a directory gets load_yaml's own message
        raise ValueError(f"{path}: not a regular file (a {what} must be a plain YAML file)")


class Experiment:
    """A validated run config bound to a plugin host.

    Args:
        config: the validated config.
        host: plugin host used to resolve it.
        notes: messages produced while applying overrides.
    """

    def __init__(self, config: RunConfig, host: Any, notes: list[str] | None = None) -> None:
        self.config = config
        self.host = host
        self.notes = notes or []

    @classmethod
    def from_config(cls, config: Any, overrides: list[str] | None = None, host: Any = None) -> "Experiment":
        """Resolve, override and validate ``config`` (mapping, YAML path or preset name)."""
        if host is None:
            from medtoolkit.plugins import default_host

            host = default_host()
        if isinstance(config, RunConfig):
            return cls(config, host)
        raw, source = resolve_raw_config(config, host)
        raw, notes = apply_overrides(raw, overrides or [])
        try:
            config = validate_config(raw, host, source=source)
        except ConfigValidationError as error:
            error.notes = notes  # a switched type may explain the error (a parameter it reset)
            raise
        return cls(config, host, notes)

    # ------------------------------------------------------------------ pieces
    def load_data(self, progress: bool = True) -> EHRData:
        """Build the dataset component and load it."""
        return self.config.dataset.build(None).load(progress=progress)

    def plugin_versions(self) -> dict[str, str]:
        return self.host.versions()

    def _build_model(self, schema: Any) -> tuple[Recommender, list[Any]]:
        model = self.config.model.build(schema)
        losses = [node.build(schema) for node in self.config.losses]
        return model, losses

    # ------------------------------------------------------------------ run
    def run(
        self, out_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
        overwrite: bool = False,
    ) -> RunResult:
        """Train and evaluate every split; write the report directory when ``out_dir`` is given.

        Args:
            out_dir: report directory (None: write nothing).
            resume: continue the interrupted run in ``out_dir``.
            progress: show data-loading progress.
            overwrite: replace the run already in ``out_dir`` (only medtoolkit's files are removed).

        Under ``torchrun`` with more than one process (:mod:`medtoolkit.training.distributed`)
        the run joins the process group (gloo on the CPU, NCCL on CUDA, ``cuda:<LOCAL_RANK>``
        per process); rank 0 alone prepares and writes ``out_dir``, the other ranks read it
        (``--resume``) and return a result with empty ``metrics``.

        Raises:
            medtoolkit.training.run_dir.RunDirectoryError: ``out_dir`` holds a run and neither
                ``resume`` nor ``overwrite`` is set, or another process is writing it.
        """
        with distributed.process_group(resolve_device(self.config.device)) as device:
            if out_dir is None:
                return self._run(None, resume, progress, device)
            if not distributed.is_main():
                problem = distributed.broadcast_object(None)  # wait until rank 0 has prepared out_dir
                if problem:  # rank 0 reports it
                    raise distributed.PeerFailed(f"rank 0: {problem}")
                return self._run(Path(out_dir), resume, progress, device)
            with contextlib.ExitStack() as stack:
                try:
                    out = stack.enter_context(open_run_dir(out_dir, resume=resume, overwrite=overwrite))
                except Exception as error:
                    distributed.broadcast_object(str(error) or type(error).__name__)
                    raise
                distributed.broadcast_object("")
                return self._run(out, resume, progress, device)

    def _run(self, out: Path | None, resume: bool, progress: bool, device: torch.device) -> RunResult:
        started = time.perf_counter()
        config = self.config
        seed_everything(config.seed)
        if config.trainer.num_threads:
            torch.set_num_threads(config.trainer.num_threads)
        main = distributed.is_main()
        resolved = config.to_dict()
        task = config.task.build(None)
        if not main:  # rank 0 loads first: it builds the data cache the others then read
            distributed.barrier()
        data = task.prepare(self.load_data(progress=progress and main))
        if main:
            distributed.barrier()
        check_groups(config.eval, data)
        saved = {"config": resolved, "resume_key": resume_key(resolved), "data_fingerprint": data.fingerprint(),
                 "plugins": self.plugin_versions()}
        if out is not None and main:  # a refused --resume leaves config.yaml as it was
            write_config(resolved, out, saved=saved, resume=resume)
        results: dict[str, SplitResult] = {}
        staged: dict[str, StagedSplit] = {}
        for split in task.splits(data):
            seed_everything(config.seed)
            schema = task.build_schema(data, split)
            if config.stages:
                staged[split.name] = StageRunner(config, data, split, schema, task, device, out=out, saved=saved,
                                                 resume=resume).run()
                continue
            model, losses = self._build_model(schema)
            results[split.name] = train_split(model, losses, data, split, schema, task, config.trainer, config.eval,
                                              device, config.seed, out=out, saved=saved, resume=resume)
        wall = time.perf_counter() - started
        if not main:  # rank 0 gathered the test predictions and reports
            return RunResult(metrics={}, out_dir=None, models={})
        if config.stages:
            metrics = staged_metrics(config, staged, data, task, device, self.plugin_versions(), wall)
            models = {name: result.stages[-1].model for name, result in staged.items()}
        else:
            metrics = run_metrics(config.name, config.model.type, results, data, task, config.eval, device,
                                  self.plugin_versions(), wall)
            models = {name: r.model for name, r in results.items()}
        if out is not None:
            write_report(metrics, out)
        return RunResult(metrics=metrics, out_dir=out, models=models)


def check_groups(eval_params: Any, data: EHRData) -> None:
    """Refuse ``eval.group_by: hospital`` on data without hospitals before anything trains.

    Raises:
        ValueError: the data has no hospital column (the message names the data and the setting).
    """
    if eval_params.group_by == "hospital" and data.hospital is None:
        raise ValueError(f"eval.group_by is 'hospital', but the data ({data.name!r}) has no hospital per visit; "
                         "use a dataset with hospitals or eval.group_by=none")


def _prediction_overrides(config: RunConfig, overrides: Sequence[str]) -> None:
    """Refuse an ``evaluate`` override that is not one of the task's prediction parameters.

    Raises:
        ValueError: the override is not ``task.<name>=...`` with ``name`` in the task's
            :attr:`~medtoolkit.components.base.Task.prediction_params` (the message lists them).
    """
    allowed = sorted(config.task.component.prediction_params)
    for text in overrides:
        keys, _ = parse_override(text)
        if len(keys) < 2 or keys[0] != "task" or keys[1] not in allowed:
            listed = ", ".join(f"task.{name}" for name in allowed) or "none for this task"
            raise ValueError(f"evaluate may only change how test visits are predicted; {short_repr(text)} is not "
                             f"one of the task's prediction parameters ({listed})")


def evaluate_run(
    run_dir: str | Path, host: Any = None, device_name: str | None = None, overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Re-evaluate the saved best models of a finished run directory on its test split(s).

    A staged run is re-scored from its last stage's model files (and those of the stages
    it starts from), rebuilt as in training (:class:`~medtoolkit.training.stages.StageRunner`).
    The task predicts (:meth:`Task.predict <medtoolkit.components.base.Task.predict>`) with
    the saved weights and fitted state; ``fit_state`` is not called again.

    Args:
        run_dir: a ``medtoolkit train --out`` directory.
        host: plugin host (None: the default one).
        device_name: where to predict (None: the run's device).
        overrides: ``task.<name>=value`` changes of the task's prediction parameters
            (:attr:`Task.prediction_params <medtoolkit.components.base.Task.prediction_params>`,
            e.g. the candidate step of a package task); the saved models are checked against
            ``config.yaml`` as written, and the changed run config is validated again.

    Raises:
        FileNotFoundError: no ``config.yaml`` or no ``model_<split>.pt`` (staged: a model
            file of the last stage, or of one it starts from).
        ValueError: a model file is unreadable, was trained with another config than
            ``config.yaml`` or on other data, or its weights do not fit the model; an override
            is not a prediction parameter of the task.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} has no config.yaml: is it a 'medtoolkit train --out' directory?")
    _check_readable_file(config_path, "config.yaml")
    experiment = Experiment.from_config(str(config_path), host=host)  # its errors name config.yaml
    config = experiment.config
    resolved = config.to_dict()
    device = resolve_device(device_name or config.device)
    predicting = config
    if overrides:
        _prediction_overrides(config, overrides)
        predicting = Experiment.from_config(resolved, overrides=list(overrides), host=experiment.host).config
    task = predicting.task.build(None)
    data = task.prepare(experiment.load_data())
    fingerprint = data.fingerprint()
    per_split = {}
    for split in task.splits(data):
        if config.stages:
            saved = {"resume_key": resume_key(resolved), "data_fingerprint": fingerprint}
            runner = StageRunner(config, data, split, task.build_schema(data, split), task, device, out=run_dir,
                                 saved=saved, load_only=True)
            per_split[split.name] = runner.run().test
            continue
        path = run_dir / f"model_{split.name}.pt"
        saved = load_checkpoint(path)
        _check_saved_config(saved.get("config"), resolved, path)
        if saved.get("data_fingerprint") != fingerprint:
            raise ValueError(f"{path} was trained on different data (fingerprint mismatch)")
        schema = task.build_schema(data, split)
        model = config.model.build(schema)
        load_weights(model, saved["model"], path)
        model.to(device)
        predictions = task.predict(model, data, split, split.test, config.eval.batch_size, device)
        per_split[split.name] = task.evaluate(
            predictions.probabilities, predictions.targets, predictions.visit_patient, schema, config.eval,
            visit_group=predictions.visit_hospital,
        )
    print(f"evaluated {run_dir} on {len(per_split)} split(s)", file=sys.stderr)
    result = {"name": config.name, "model": config.model.type, "test": combine_splits(per_split)}
    if overrides:
        result["overrides"] = list(overrides)
    return result


def _check_saved_config(saved: Any, resolved: dict[str, Any], path: Path) -> None:
    """Refuse a model file whose own config is missing or differs from ``config.yaml`` (device aside)."""
    if not isinstance(saved, Mapping):
        raise ValueError(f"{path} has no config of its own: cannot check it against config.yaml")
    difference = first_difference(
        {k: v for k, v in saved.items() if k != "device"}, {k: v for k, v in resolved.items() if k != "device"}
    )
    if difference is not None:
        raise ValueError(
            f"{path} was trained with another config than config.yaml; first difference "
            f"(model file vs config.yaml): {difference}"
        )
