"""The files of a staged run: their names, their checks, and reading and writing them.

A stage trained once writes ``model_<split>.<stage>.pt`` (the whole ``state_dict``) and
``checkpoint_<split>.<stage>.pt`` after every epoch; one unit of a repeated stage writes
``model_<split>.<stage>.h<index>.pt`` (only the entries of its trainable parameters, those
its adapter added and its fitted-state buffers, loaded over the unit's initial weights). Every model file carries the
run's resume key and data fingerprint, and is refused (:func:`check_stage_file`) when they
are not this run's; :class:`~medtoolkit.training.stages.StageRunner` decides when each file
is read or written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medtoolkit.training.checkpoint import load_checkpoint, load_weights, resume_key_difference, save_atomic
from medtoolkit.training.trainer import TrainingHistory

__all__ = [
    "check_stage_file",
    "is_stage_file",
    "load_unit_entries",
    "read_stage_file",
    "stage_checkpoint_name",
    "stage_model_name",
    "write_stage_file",
]


# ---------------------------------------------------------------------------- names
def stage_model_name(split: str, stage: str, hospital: int | None = None) -> str:
    """``model_<split>.<stage>.pt``, or ``model_<split>.<stage>.h<hospital>.pt`` for a unit."""
    return f"model_{split}.{stage}.pt" if hospital is None else f"model_{split}.{stage}.h{hospital}.pt"


def stage_checkpoint_name(split: str, stage: str) -> str:
    """``checkpoint_<split>.<stage>.pt`` (per-epoch state of a stage trained once)."""
    return f"checkpoint_{split}.{stage}.pt"


def is_stage_file(path: Path) -> bool:
    """Whether ``path`` is a stage's (or unit's) model file: ``model_<split>.<stage>[.h<i>].pt``."""
    return path.name.startswith("model_") and path.name.endswith(".pt") and "." in path.name[len("model_"):-3]


# ---------------------------------------------------------------------------- checks
def check_stage_file(state: dict[str, Any], saved: dict[str, Any], path: Path, purpose: str = "resume") -> None:
    """Refuse a stage model file of another run: its resume key and data fingerprint must match.

    Args:
        state: the loaded file.
        saved: this run's ``resume_key`` and ``data_fingerprint``.
        path: the file (named in errors).
        purpose: ``"resume"`` (continuing a run) or ``"evaluate"`` (re-scoring one).

    Raises:
        ValueError: a key is missing or differs (the message names the file and, for the
            config, the first setting that differs).
    """
    lacking = [key for key in ("resume_key", "data_fingerprint") if state.get(key) is None]
    if lacking:
        raise ValueError(f"{path} has no {', '.join(lacking)}: not a stage model file written by `medtoolkit train`")
    if state["data_fingerprint"] != saved.get("data_fingerprint"):
        if purpose == "evaluate":
            raise ValueError(f"{path} was trained on different data (fingerprint mismatch)")
        raise ValueError(f"cannot resume from {path}: the model file's data fingerprint differs from this run's "
                         "(different data); use a new --out directory")
    if state["resume_key"] != saved.get("resume_key"):
        difference = resume_key_difference(state["resume_key"], saved["resume_key"])
        where = f" at {difference}" if difference else ""
        if purpose == "evaluate":
            raise ValueError(f"{path} was trained with another config than config.yaml; first difference "
                             f"(model file vs config.yaml): {difference}")
        raise ValueError(f"cannot resume from {path}: the model file's config differs from this run's{where} "
                         "(different settings); use a new --out directory")


# ---------------------------------------------------------------------------- reading and writing
def read_stage_file(path: Path, saved: dict[str, Any], purpose: str = "resume") -> dict[str, Any]:
    """Load a stage (or unit) model file and check that it belongs to this run.

    Args:
        path: the model file.
        saved: this run's ``resume_key`` and ``data_fingerprint``.
        purpose: ``"resume"`` or ``"evaluate"`` (see :func:`check_stage_file`).

    Returns:
        The file's contents (``model``: the weights; ``history``; the run's keys).

    Raises:
        ValueError: the file is not this run's (:func:`check_stage_file`).
    """
    state = load_checkpoint(path)
    check_stage_file(state, saved, path, purpose)
    return state


def write_stage_file(
    path: Path, entries: dict[str, torch.Tensor], saved: dict[str, Any], split: str, stage: str,
    history: TrainingHistory, hospital: int | None = None, hospital_id: str = "",
) -> None:
    """Write a finished stage's (or unit's) model file atomically.

    Args:
        path: the model file (:func:`stage_model_name`).
        entries: the whole ``state_dict`` of a stage trained once; a unit's saved entries.
        saved: what the file carries: ``config`` (plain data, for a stage trained once),
            ``resume_key``, ``data_fingerprint``, ``plugins``.
        split: the split's name.
        stage: the stage's name.
        history: the training history.
        hospital: the unit's hospital index (None: a stage trained once).
        hospital_id: the unit's hospital id as reported (units only).
    """
    payload: dict[str, Any] = {
        "model": entries, "resume_key": saved.get("resume_key"),
        "data_fingerprint": saved.get("data_fingerprint"), "plugins": saved.get("plugins", {}),
        "split": split, "stage": stage, "history": history.to_json(),
    }
    if hospital is None:
        payload["config"] = saved.get("config")
    else:
        payload.update(hospital=hospital, hospital_id=hospital_id)
    save_atomic(payload, path)


def load_unit_entries(model: torch.nn.Module, entries: Any, where: Any) -> None:
    """Load a unit file's entries over ``model``'s current weights.

    Raises:
        ValueError: an entry is not in the model or has another shape (names ``where``).
    """
    if not isinstance(entries, dict):
        raise ValueError(f"{where}: expected a state dict, found a {type(entries).__name__}")
    merged = dict(model.state_dict())
    unknown = [key for key in entries if key not in merged]
    if unknown:
        raise ValueError(f"{where} does not fit the model built from its config: unexpected keys "
                         f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}")
    merged.update(entries)
    load_weights(model, merged, where)
