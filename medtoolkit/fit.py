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
        TypeError: ``model``, ``losses``, ``data``, ``task``, ``trainer``, ``eval`` or
            ``dataset`` is not what it should be (a class where an object is expected, a
            single loss instead of a list, ...); the message says which and how to fix it.
        ValueError: ``losses`` is empty.
        medtoolkit.training.run_dir.RunDirectoryError: ``out_dir`` holds a run and neither
            ``resume`` nor ``overwrite`` is set, or another process is writing it.
    """
    _check_inputs(model, losses, data, task, trainer, eval, dataset)
    started = time.perf_counter()
    if host is None:
        from medtoolkit.plugins import default_host

        host = default_host()
    trainer, eval = trainer or TrainerParams(), eval or EvalParams()
    split = split if split is not None else task.splits(data)[0]
    model_type = registered_name(type(model), host) or type(model).__name__
    config, valid = python_run_config(name=name or model_type, seed=seed, device=device, dataset=dataset,
                                      task=task, model=model, losses=losses, trainer=trainer, eval=eval, host=host)
    plugins = host.versions()
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


def _check_inputs(model: Any, losses: Any, data: Any, task: Any, trainer: Any, eval: Any, dataset: Any) -> None:
    """Refuse arguments of the wrong type with a message that says how to fix them.

    Raises:
        TypeError: an argument is of the wrong type (a class passed instead of an object...).
        ValueError: ``losses`` is empty.
    """
    _require(model, Recommender, "model")
    if isinstance(losses, (Loss, type, str, bytes)) or not isinstance(losses, Sequence):
        if isinstance(losses, Loss) or (isinstance(losses, type) and issubclass(losses, Loss)):
            raise TypeError(f"losses must be a list of Loss objects, got {_what(losses)}; pass [loss]")
        raise TypeError(f"losses must be a list of Loss objects, got {_what(losses)}")
    if not losses:
        raise ValueError("losses is empty: pass at least one Loss object (e.g. BCELoss(BCELoss.Params(), schema))")
    for index, loss in enumerate(losses):
        _require(loss, Loss, f"losses[{index}]")
    _require(data, EHRData, "data", hint="load it with dataset.load()")
    _require(task, Task, "task")
    if trainer is not None:
        _require(trainer, TrainerParams, "trainer", hint="e.g. TrainerParams(epochs=10)")
    if eval is not None:
        _require(eval, EvalParams, "eval", hint="e.g. EvalParams(bootstrap_rounds=0)")
    if dataset is not None:
        _require(dataset, Dataset, "dataset")


def _require(value: Any, expected: type, name: str, hint: str = "") -> None:
    """Raise a :class:`TypeError` naming ``name`` unless ``value`` is an ``expected`` object.

    A component class passed where its object is expected gets the way to build it:
    ``losses[0] is the class BCELoss; build it: BCELoss(BCELoss.Params(...), schema)``.
    """
    if isinstance(value, expected):
        return
    if isinstance(value, type) and issubclass(value, expected):
        klass = value.__name__
        how = f"{klass}(...)" if not hasattr(value, "Params") else f"{klass}({klass}.Params(...), schema)"
        if issubclass(value, (Dataset, Task)):
            how = f"{klass}({klass}.Params(...))"
        raise TypeError(f"{name} is the class {klass}; build it: {how}")
    message = f"{name} must be {_article(expected.__name__)} {expected.__name__} object, got {_what(value)}"
    raise TypeError(f"{message} ({hint})" if hint else message)


def _what(value: Any) -> str:
    """``the class X`` or ``a X object`` for a message."""
    if isinstance(value, type):
        return f"the class {value.__name__}"
    name = type(value).__name__
    return f"{_article(name)} {name} object"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
