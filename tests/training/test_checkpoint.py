"""Checkpoint files: atomic writes, safe (weights-only) reads, clear errors."""

from __future__ import annotations

import pathlib
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from medtoolkit.training import checkpoint
from medtoolkit.training.checkpoint import (
    first_difference,
    load_checkpoint,
    load_weights,
    save_atomic,
    write_text_atomic,
)


class Trap:
    """Unpickling this object would create ``path`` (stands in for arbitrary code)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.path,))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trip_keeps_tensors_and_plain_data(tmp_path: Path) -> None:
    payload = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "config": {"seed": 3, "losses": [{"type": "bce"}]},
               "plugins": {"medtoolkit": "0.1.0"}, "data_fingerprint": "f" * 64, "best_model": None}
    save_atomic(payload, tmp_path / "sub" / "model.pt")  # creates the parent directory
    loaded = load_checkpoint(tmp_path / "sub" / "model.pt")
    assert torch.equal(loaded["model"]["w"], payload["model"]["w"])
    assert {k: v for k, v in loaded.items() if k != "model"} == {k: v for k, v in payload.items() if k != "model"}
    assert leftovers(tmp_path / "sub") == ["model.pt"]


def test_failed_save_leaves_no_partial_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "checkpoint.pt"
    save_atomic({"model": {}, "epoch": torch.tensor(1)}, target)

    def half_written(payload: Any, path: str) -> None:
        Path(path).write_bytes(b"PK\x03\x04 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"model": {}, "epoch": torch.tensor(2)}, target)
    monkeypatch.undo()
    assert leftovers(tmp_path) == ["checkpoint.pt"]  # no temporary file left behind
    assert int(load_checkpoint(target)["epoch"]) == 1  # the previous checkpoint is intact


def test_failed_first_save_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(payload: Any, path: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(checkpoint.torch, "save", fail)
    with pytest.raises(RuntimeError):
        save_atomic({"x": 1}, tmp_path / "model.pt")
    assert leftovers(tmp_path) == []


def test_load_refuses_arbitrary_pickled_objects(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "extra": Trap(marker)}, path)  # plain torch.save: any object goes
    with pytest.raises(ValueError, match=re.escape(
        f"cannot read checkpoint {path}: it holds objects other than tensors and plain data "
        "(getattr; refused: loading it could run code)"
    )):
        load_checkpoint(path)
    assert not marker.exists()


def test_load_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nowhere\.pt"):
        load_checkpoint(tmp_path / "nowhere.pt")


def test_load_reports_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == f"cannot read checkpoint {path}: corrupt or truncated file (Unsupported operand 110)"


def test_load_maps_tensors_to_the_cpu(tmp_path: Path) -> None:
    save_atomic({"model": {"w": torch.ones(2)}}, tmp_path / "m.pt")
    assert load_checkpoint(tmp_path / "m.pt")["model"]["w"].device == torch.device("cpu")


def test_write_text_atomic_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    write_text_atomic("a long first version\n" * 10, target)
    write_text_atomic("± short\n", target)
    assert target.read_text(encoding="utf-8") == "± short\n"
    assert leftovers(tmp_path) == ["report.md"]


def test_failed_text_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_text_atomic("{}", target)
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic("lone surrogate \ud800", target)
    assert leftovers(tmp_path) == ["metrics.json"]
    assert target.read_text(encoding="utf-8") == "{}"


def test_temporary_files_are_named_after_their_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def record(payload: Any, path: str) -> None:
        seen.append(Path(path).name)
        raise OSError("stop")

    monkeypatch.setattr(checkpoint.torch, "save", record)
    with pytest.raises(OSError):
        save_atomic({"model": {}}, tmp_path / "model_seed0.pt")
    (name,) = seen
    assert name.startswith("model_seed0.pt") and name.endswith(checkpoint.TMP_SUFFIX)


# ---------------------------------------------------------------------------- what a checkpoint must be
@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (torch.ones(3), "expected a dict, found a Tensor"),
        ([{"model": {}}], "expected a dict, found a list"),
        ({}, "the checkpoint is empty"),
        ({"config": {"seed": 1}}, "no 'model' entry (expected the model's state dict)"),
        ({"model": [1, 2]}, "'model' is a list (expected the model's state dict)"),
    ],
    ids=["tensor", "list", "empty", "no-model", "model-not-a-dict"],
)
def test_load_refuses_what_is_not_a_checkpoint(tmp_path: Path, payload: Any, problem: str) -> None:
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == f"cannot read checkpoint {path}: {problem}"


@pytest.mark.parametrize("keep", [0, 10, 200, -1], ids=["empty", "header", "mid", "last-byte-missing"])
def test_load_reports_a_truncated_file(tmp_path: Path, keep: int) -> None:
    whole = tmp_path / "whole.pt"
    save_atomic({"model": {"w": torch.arange(1000.0)}, "config": {"seed": 1}}, whole)
    content = whole.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(content[:keep] if keep >= 0 else content[:-1])
    with pytest.raises(ValueError, match=re.escape(f"cannot read checkpoint {path}: corrupt or truncated file")):
        load_checkpoint(path)


def test_load_reports_a_directory(tmp_path: Path) -> None:
    (tmp_path / "model.pt").mkdir()
    expected = f"cannot read checkpoint {tmp_path / 'model.pt'}: not a regular file"
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_checkpoint(tmp_path / "model.pt")


def test_load_refuses_a_fifo_instead_of_blocking_on_it(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "model.pt")
    expected = f"cannot read checkpoint {tmp_path / 'model.pt'}: not a regular file"
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_checkpoint(tmp_path / "model.pt")


def test_a_foreign_pickle_protocol_gives_no_torch_warning(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    """torch warns (two lines on stderr) about a protocol-4 pickle: the error line must stay alone."""
    import argparse
    import pickle

    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(argparse.Namespace(a=1), protocol=4))
    with pytest.raises(ValueError, match=re.escape(f"cannot read checkpoint {path}: corrupt or truncated file")):
        load_checkpoint(path)
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


def test_files_written_atomically_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        save_atomic({"model": {}}, tmp_path / "model.pt")
        write_text_atomic("x", tmp_path / "report.md")
    finally:
        os.umask(umask)
    assert (tmp_path / "model.pt").stat().st_mode & 0o777 == 0o644  # mkstemp alone gives 0600
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------------------- loading weights
class Two(torch.nn.Module):
    def __init__(self, width: int = 3, extra: bool = False) -> None:
        super().__init__()
        self.a = torch.nn.Linear(2, width)
        self.b = torch.nn.Linear(width, 1)
        if extra:
            self.c = torch.nn.Linear(1, 1)


def test_load_weights_accepts_a_matching_state(tmp_path: Path) -> None:
    source, target = Two(), Two()
    load_weights(target, source.state_dict(), tmp_path / "m.pt")
    assert torch.equal(target.a.weight, source.a.weight)


@pytest.mark.parametrize(
    ("saved", "problem"),
    [
        (Two(extra=True), "unexpected keys c.weight, c.bias"),
        (Two(width=4), "size mismatch a.weight: saved [4, 2], model [3, 2], a.bias: saved [4], model [3], "
                       "b.weight: saved [1, 4], model [1, 3]"),
    ],
    ids=["unexpected", "sizes"],
)
def test_load_weights_names_the_file_and_the_first_keys(tmp_path: Path, saved: Two, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        load_weights(Two(), saved.state_dict(), tmp_path / "model_seed0.pt")
    assert str(caught.value) == f"{tmp_path / 'model_seed0.pt'} does not fit the model built from its config: {problem}"


def test_load_weights_lists_a_few_missing_keys_and_counts_the_rest(tmp_path: Path) -> None:
    model = torch.nn.Sequential(*[torch.nn.Linear(1, 1) for _ in range(3)])
    with pytest.raises(ValueError) as caught:
        load_weights(model, {}, tmp_path / "m.pt")
    assert str(caught.value).endswith(": missing keys 0.weight, 0.bias, 1.weight (+3 more)")


def test_first_difference_names_the_key_path() -> None:
    assert first_difference({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 3}]}}) == "a.b.1.c (2 vs 3)"
    assert first_difference({"a": 1, "b": 2}, {"a": 1}) == "b (only in the first)"
    assert first_difference({"a": 1}, {"a": 1, "z": 0}) == "z (only in the second)"
    assert first_difference({"l": [1, 2]}, {"l": [1]}) == "l (2 items vs 1)"
    assert first_difference(1, 2) == "<root> (1 vs 2)"
    assert first_difference({"x": [1, {"y": None}]}, {"x": [1, {"y": None}]}) is None
