"""Train and evaluate parts built in Python: :func:`fit_evaluate`.

The config-free twin of :meth:`medtoolkit.experiment.Experiment.run`: the model and its
losses are objects you constructed (``GAMENet(GAMENet.Params(...), schema)``), and the
run goes through the same trainer, scoring and report writing, so with the same seed it
gives the same numbers and the same report directory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from medtoolkit.components.base import Dataset, Loss, Recommender, Task
from medtoolkit.config import EvalParams, TrainerParams
from medtoolkit.data.ehr import EHRData
from medtoolkit.training.device import resolve_device
from medtoolkit.training.parts_config import python_run_config, registered_name
from medtoolkit.training.pipeline import RunResult, resume_key, run_metrics, train_split, write_config, write_report
from medtoolkit.training.run_dir import open_run_dir


def fit_evaluate(
    model: Recommender,
    losses: Sequence[Loss],
    data: EHRData,
    *,
    task: Task,
    split: Any = None,
    trainer: TrainerParams | None = None,
    eval: EvalParams | None = None,
    out_dir: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    dataset: Dataset | None = None,
    name: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    host: Any = None,
) -> RunResult:
    """Train ``model`` with ``losses`` on one split, score it on the test patients, write the report.

    Seed (``medtoolkit.training.device.seed_everything(seed)``) before building the model:
    its initial weights come from torch's generator. ``seed`` here seeds batch shuffling, as
    a run file's ``seed`` does, so the same seed gives the same numbers as ``medtoolkit train``.

    Args:
        model: the recommender, built for ``task.build_schema(data, split)``.
        losses: its loss terms (objects, e.g. ``BCELoss(BCELoss.Params(weight=0.9), schema)``).
        data: the loaded dataset.
        task: the task that made ``split`` and scores the predictions.
        split: one of ``task.splits(data)`` (None: the first).
        trainer: trainer settings (None: defaults).
        eval: threshold, averaging and bootstrap (None: defaults).
        out_dir: report directory (None: write nothing). It gets ``metrics.json``, ``report.md``,
            ``curves.png``, ``model_<split>.pt``, ``checkpoint_<split>.pt`` and, when the parts
            form a valid run file (see
            :func:`~medtoolkit.training.parts_config.python_run_config`), ``config.yaml``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        seed: seeds batch shuffling.
        dataset: the dataset component ``data`` was loaded with (only for ``config.yaml``).
        name: the run's name in the report (default: the model's registered name).
        resume: continue the interrupted run in ``out_dir``.
        overwrite: replace the run already in ``out_dir``.
        host: plugin host (default: every installed plugin).

    Returns:
        The metrics (``metrics.json`` content), the report directory and the trained model.

    Raises:
        medtoolkit.training.run_dir.RunDirectoryError: ``out_dir`` holds a run and neither
            ``resume`` nor ``overwrite`` is set, or another process is writing it.
    """
    started = time.perf_counter()
    if host is None:
        from medtoolkit.plugins import default_host

        host = default_host()
    trainer, eval = trainer or TrainerParams(), eval or EvalParams()
    split = split if split is not None else task.splits(data)[0]
    model_type = registered_name(type(model), host) or type(model).__name__
    config, valid = python_run_config(name=name or model_type, seed=seed, device=device, dataset=dataset,
                                      task=task, model=model, losses=losses, trainer=trainer, eval=eval, host=host)
    plugins = {p.name: p.version for p in host.plugins if p.status == "ok"}
    saved = {"config": config, "resume_key": resume_key(config), "data_fingerprint": data.fingerprint(),
             "plugins": plugins}
    torch_device = resolve_device(device)
    if trainer.num_threads:
        torch.set_num_threads(trainer.num_threads)
    schema = model.schema if model.schema is not None else task.build_schema(data, split)

    def run(out: Path | None) -> RunResult:
        if out is not None and valid:
            write_config(config, out, saved=saved, resume=resume)
        result = train_split(model, list(losses), data, split, schema, task, trainer,
                             eval, torch_device, seed, out=out, saved=saved, resume=resume)
        metrics = run_metrics(config["name"], model_type, {split.name: result}, data, task, eval, torch_device,
                              plugins, time.perf_counter() - started)
        if out is not None:
            write_report(metrics, out)
        return RunResult(metrics=metrics, out_dir=out, models={split.name: result.model})

    if out_dir is None:
        return run(None)
    with open_run_dir(out_dir, resume=resume, overwrite=overwrite) as out:
        return run(out)
