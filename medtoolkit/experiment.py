"""An experiment: dataset -> task splits -> model + losses -> training -> bootstrapped test.

Every run writes a report directory: ``config.yaml`` (resolved), ``metrics.json``,
``report.md``, ``curves.png``, and per split ``model_<split>.pt`` (best weights with the
resolved config, plugin versions and data fingerprint) and ``checkpoint_<split>.pt``
(for ``--resume``).
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from medtoolkit.components.base import Recommender
from medtoolkit.config import RunConfig, apply_overrides, load_yaml, validate_config
from medtoolkit.data.ehr import EHRData
from medtoolkit.training.checkpoint import load_checkpoint, save_atomic, write_text_atomic
from medtoolkit.training.device import resolve_device, seed_everything
from medtoolkit.training.predict import predict
from medtoolkit.training.report import plot_curves, render_report
from medtoolkit.training.trainer import Trainer

log = logging.getLogger("medtoolkit")

METRIC_KEYS = ("jaccard", "prauc", "f1", "precision", "recall", "ddi_rate", "avg_drugs")
#: trainer settings that may change between an interrupted run and its ``--resume``
_RESUME_FREE = ("epochs", "early_stopping_patience", "progress", "num_threads")


def resolve_raw_config(config: Any, host: Any) -> tuple[dict[str, Any], str]:
    """A raw config mapping from a mapping, a YAML path or a preset name, and its source name."""
    if isinstance(config, Mapping):
        return dict(config), "config"
    text = str(config)
    path = Path(text)
    if path.exists():
        return load_yaml(path), str(path)
    if text in host.registry("preset"):
        from medtoolkit.presets import preset_config

        return preset_config(text, host=host), f"preset {text!r}"
    if text.endswith((".yaml", ".yml")):
        raise FileNotFoundError(f"run file not found: {text}")
    raise FileNotFoundError(
        f"{text!r} is neither a run file nor a preset; presets: {', '.join(host.registry('preset').names())}"
    )


def _combine_splits(per_split: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One split: its metrics. Several (random protocol): mean of means, std over splits."""
    if len(per_split) == 1:
        return next(iter(per_split.values()))
    combined: dict[str, Any] = {}
    for key in METRIC_KEYS:
        means = [m[key]["mean"] for m in per_split.values() if key in m]
        if means:
            combined[key] = {"mean": float(np.mean(means)), "std": float(np.std(means))}
    combined["splits"] = per_split
    return combined


def _peak_memory_mb() -> float:
    # ru_maxrss is in kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class RunResult:
    """What :meth:`Experiment.run` returns."""

    metrics: dict[str, Any]
    out_dir: Path | None
    models: dict[str, Recommender] = field(default_factory=dict)

    @property
    def report_markdown(self) -> str:
        return render_report(self.metrics)


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
        return cls(validate_config(raw, host, source=source), host, notes)

    # ------------------------------------------------------------------ pieces
    def load_data(self, progress: bool = True) -> EHRData:
        """Build the dataset component and load it."""
        return self.config.dataset.build(None).load(progress=progress)

    def plugin_versions(self) -> dict[str, str]:
        return {p.name: p.version for p in self.host.plugins if p.status == "ok"}

    def _build_model(self, schema: Any) -> tuple[Recommender, list[Any]]:
        model = self.config.model.build(schema)
        losses = [node.build(schema) for node in self.config.losses]
        return model, losses

    # ------------------------------------------------------------------ run
    def run(self, out_dir: str | Path | None = None, resume: bool = False, progress: bool = True) -> RunResult:
        """Train and evaluate; write the report directory when ``out_dir`` is given."""
        started = time.perf_counter()
        config = self.config
        seed_everything(config.seed)
        if config.trainer.num_threads:
            torch.set_num_threads(config.trainer.num_threads)
        device = resolve_device(config.device)
        out = Path(out_dir) if out_dir is not None else None
        resolved = config.to_dict()
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(yaml.safe_dump(resolved, sort_keys=False), out / "config.yaml")

        data = self.load_data(progress=progress)
        fingerprint = data.fingerprint()
        statistics = data.statistics()
        task = config.task.build(None)
        splits = task.splits(data)
        per_split: dict[str, dict[str, Any]] = {}
        histories: dict[str, dict[str, Any]] = {}
        models: dict[str, Recommender] = {}
        epoch_seconds: list[float] = []
        best_epochs: dict[str, int | None] = {}
        n_params = 0
        # what --resume must find unchanged: all but the device and the trainer settings that
        # only say how long to train or how to report (a finished run may be extended)
        comparable = {k: v for k, v in resolved.items() if k != "device"}
        comparable["trainer"] = {k: v for k, v in resolved["trainer"].items() if k not in _RESUME_FREE}
        for split in splits:
            seed_everything(config.seed)
            schema = task.build_schema(data, split)
            model, losses = self._build_model(schema)
            n_params = sum(p.numel() for p in model.parameters())
            trainer = Trainer(model, losses, config.trainer, device, seed=config.seed,
                              threshold=config.eval.threshold, averaging=config.eval.averaging)
            extra = {"config": json.dumps(comparable, sort_keys=True), "data_fingerprint": fingerprint,
                     "plugins": self.plugin_versions(), "split": split.name}
            history = trainer.fit(
                data, split.train, split.val, schema.ddi_adjacency,
                checkpoint_path=(out / f"checkpoint_{split.name}.pt") if out is not None else None,
                checkpoint_extra=extra, resume=resume,
            )
            histories[split.name] = history.to_json()
            epoch_seconds += [e.seconds for e in history.epochs]
            best_epochs[split.name] = history.best_epoch
            predictions = predict(trainer.model, data, split.test, config.eval.batch_size, device)
            per_split[split.name] = task.evaluate(
                predictions.probabilities, predictions.targets, predictions.visit_patient, schema, config.eval
            )
            models[split.name] = trainer.model
            if out is not None:
                save_atomic(
                    {"model": trainer.model.state_dict(), "config": resolved, "plugins": self.plugin_versions(),
                     "data_fingerprint": fingerprint, "split": split.name},
                    out / f"model_{split.name}.pt",
                )
        metrics = {
            "name": config.name,
            "model": config.model.type,
            "test": _combine_splits(per_split),
            "epoch_seconds": epoch_seconds,
            "best_epochs": best_epochs,
            "n_params": int(n_params),
            "data": {
                "name": data.name,
                "patients": statistics["patients"],
                "visits": statistics["visits"],
                "n_drugs": statistics["n_drugs"],
                "ground_truth_ddi_rate": statistics["ground_truth_ddi_rate"],
            },
            "data_fingerprint": fingerprint,
            "protocol": {
                "name": getattr(task.params, "protocol", "?"),
                "splits": [s.name for s in splits],
                "averaging": config.eval.averaging,
                "bootstrap_rounds": config.eval.bootstrap_rounds,
                "bootstrap_fraction": config.eval.bootstrap_fraction,
                "threshold": config.eval.threshold,
            },
            "device": str(device),
            "plugins": self.plugin_versions(),
            "history": histories,
            "wall_seconds": time.perf_counter() - started,
            "peak_memory_mb": _peak_memory_mb(),
        }
        if device.type == "cuda":
            metrics["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        if out is not None:
            write_text_atomic(json.dumps(metrics, indent=2), out / "metrics.json")
            write_text_atomic(render_report(metrics), out / "report.md")
            plot_curves(histories, out / "curves.png")
        return RunResult(metrics=metrics, out_dir=out, models=models)


def evaluate_run(run_dir: str | Path, host: Any = None, device_name: str | None = None) -> dict[str, Any]:
    """Re-evaluate the saved best models of a finished run directory on its test split(s)."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} has no config.yaml: is it a 'medtoolkit train --out' directory?")
    experiment = Experiment.from_config(load_yaml(config_path), host=host)
    config = experiment.config
    device = resolve_device(device_name or config.device)
    data = experiment.load_data()
    fingerprint = data.fingerprint()
    task = config.task.build(None)
    per_split = {}
    for split in task.splits(data):
        path = run_dir / f"model_{split.name}.pt"
        saved = load_checkpoint(path)
        if saved.get("data_fingerprint") != fingerprint:
            raise ValueError(f"{path} was trained on different data (fingerprint mismatch)")
        schema = task.build_schema(data, split)
        model = config.model.build(schema)
        model.load_state_dict(saved["model"])
        model.to(device)
        predictions = predict(model, data, split.test, config.eval.batch_size, device)
        per_split[split.name] = task.evaluate(
            predictions.probabilities, predictions.targets, predictions.visit_patient, schema, config.eval
        )
    print(f"evaluated {run_dir} on {len(per_split)} split(s)", file=sys.stderr)
    return {"name": config.name, "model": config.model.type, "test": _combine_splits(per_split)}
