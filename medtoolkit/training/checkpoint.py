"""Checkpoints: ``state_dict`` + resolved config + plugin versions + data fingerprint.

Files are written atomically (temporary file, then ``os.replace``) and read with
``torch.load(weights_only=True)``: a checkpoint can never execute code when loaded.
A temporary file is named ``<target name><random>.tmp`` next to its target
(see :data:`TMP_SUFFIX`); :mod:`medtoolkit.training.run_dir` removes the ones an
interrupted process left behind.
"""

from __future__ import annotations

import json

import os
import pickle
import re
import stat
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

#: suffix of the temporary files written by :func:`save_atomic` and :func:`write_text_atomic`
TMP_SUFFIX = ".tmp"
#: how torch's weights-only unpickler names an object it refuses to create
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
#: how many offending keys a state-dict mismatch message names
_SHOWN_KEYS = 3


def _temporary_for(path: Path) -> tuple[int, str]:
    handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=TMP_SUFFIX, dir=path.parent)
    # mkstemp creates the file 0600: give it the mode an ordinary open() would (umask applied)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(handle, 0o666 & ~umask)
    return handle, temporary


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``payload`` with ``torch.save`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _temporary_for(path)
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic` (tensors and plain data only).

    Args:
        path: a ``model_<split>.pt`` or ``checkpoint_<split>.pt`` file.

    Returns:
        The checkpoint: a dict with at least a ``model`` state dict.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a regular file, the file is corrupt or truncated, holds objects other than tensors and
            plain data (refused unread), or is not a dict with a ``model`` state dict.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not stat.S_ISREG(path.stat().st_mode):  # a directory, FIFO (would block forever) or device
        raise ValueError(f"cannot read checkpoint {path}: not a regular file")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a foreign file
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _REFUSED_GLOBAL.search(str(error))
        if refused:
            raise ValueError(
                f"cannot read checkpoint {path}: it holds objects other than tensors and plain data "
                f"({refused.group(1)}; refused: loading it could run code)"
            ) from None
        raise ValueError(
            f"cannot read checkpoint {path}: corrupt or truncated file ({_first_line(error)})"
        ) from None
    except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged file
        raise ValueError(
            f"cannot read checkpoint {path}: corrupt or truncated file ({type(error).__name__}: {_first_line(error)})"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"cannot read checkpoint {path}: expected a dict, found a {type(state).__name__}")
    if not state:
        raise ValueError(f"cannot read checkpoint {path}: the checkpoint is empty")
    if not isinstance(state.get("model"), Mapping):
        found = "no 'model' entry" if "model" not in state else f"'model' is a {type(state['model']).__name__}"
        raise ValueError(f"cannot read checkpoint {path}: {found} (expected the model's state dict)")
    return state


def _first_line(error: BaseException) -> str:
    """The informative line of a torch load error (its weights-only reason when it has one)."""
    text = str(error)
    reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if reason:
        return reason.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")


def state_dict_mismatch(expected: Mapping[str, Any], saved: Mapping[str, Any]) -> str | None:
    """What keeps ``saved`` from loading into a model whose state dict is ``expected``.

    Returns:
        ``"missing keys a, b; unexpected keys c; size mismatch d: saved [2, 3], model [4, 3]"``
        (each list cut to its first few keys), or None when keys and shapes all agree.
    """
    missing = [key for key in expected if key not in saved]
    unexpected = [key for key in saved if key not in expected]
    resized = [
        f"{key}: saved {list(saved[key].shape)}, model {list(expected[key].shape)}"
        for key in expected
        if key in saved and hasattr(saved[key], "shape") and tuple(saved[key].shape) != tuple(expected[key].shape)
    ]
    parts = [f"{label} {_listed(keys)}" for label, keys in
             (("missing keys", missing), ("unexpected keys", unexpected), ("size mismatch", resized)) if keys]
    return "; ".join(parts) or None


def load_weights(model: torch.nn.Module, state: Mapping[str, Any], path: str | Path) -> None:
    """``model.load_state_dict(state)`` with a mismatch reported as a ValueError naming ``path``.

    Fitted-state buffers (:meth:`~medtoolkit.components.base.Recommender.register_fitted_state`)
    take the shape they have in ``state`` first: their size may depend on the training data.

    Raises:
        ValueError: keys are missing or unexpected, or tensor shapes differ.
    """
    from medtoolkit.components.base import resize_fitted_state

    if isinstance(state, Mapping):
        resize_fitted_state(model, state)
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem is None:
        try:
            model.load_state_dict(state)
            return
        except RuntimeError as error:
            problem = str(error).splitlines()[0]
    raise ValueError(f"{path} does not fit the model built from its config: {problem}")


def first_difference(left: Any, right: Any, path: str = "") -> str | None:
    """The first key path where two plain-data trees differ, with both values.

    Returns:
        ``"model.hidden_dim (64 vs 8)"``, ``"losses (3 items vs 1)"``, or None when equal.
    """
    where = path or "<root>"
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        for key in list(left) + [k for k in right if k not in left]:
            child = f"{path}.{key}" if path else str(key)
            if key not in left or key not in right:
                side = "only in the first" if key in left else "only in the second"
                return f"{child} ({side})"
            found = first_difference(left[key], right[key], child)
            if found is not None:
                return found
        return None
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        if len(left) != len(right):
            return f"{where} ({len(left)} items vs {len(right)})"
        for index, (a, b) in enumerate(zip(left, right)):
            found = first_difference(a, b, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
        return None
    return None if left == right else f"{where} ({left!r} vs {right!r})"


def resume_key_difference(saved: Any, current: Any) -> str | None:
    """:func:`first_difference` of two resume keys (JSON text); None when they cannot be parsed."""
    try:
        return first_difference(json.loads(saved), json.loads(current))
    except (TypeError, ValueError):
        return None


def write_text_atomic(text: str, path: str | Path) -> None:
    """Write a text file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _temporary_for(path)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
