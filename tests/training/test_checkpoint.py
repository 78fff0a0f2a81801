"""Checkpoint files: atomic writes, safe (weights-only) reads, clear errors."""

from __future__ import annotations

import pathlib
from pathlib import Path
from typing import Any

import pytest
import torch

from medtoolkit.training import checkpoint
from medtoolkit.training.checkpoint import load_checkpoint, save_atomic, write_text_atomic


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
    save_atomic({"epoch": torch.tensor(1)}, target)

    def half_written(payload: Any, path: str) -> None:
        Path(path).write_bytes(b"PK\x03\x04 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"epoch": torch.tensor(2)}, target)
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
    with pytest.raises(ValueError, match=f"cannot read checkpoint {path}"):
        load_checkpoint(path)
    assert not marker.exists()


def test_load_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nowhere\.pt"):
        load_checkpoint(tmp_path / "nowhere.pt")


def test_load_reports_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_load_maps_tensors_to_the_cpu(tmp_path: Path) -> None:
    save_atomic({"w": torch.ones(2)}, tmp_path / "m.pt")
    assert load_checkpoint(tmp_path / "m.pt")["w"].device == torch.device("cpu")


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
