"""Names of raw-table datasets (:func:`medtoolkit.data.loaders._raw.dataset_name`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtoolkit.data.loaders._raw import dataset_name


@pytest.mark.parametrize("source", ["mimic3", "mimic4", "eicu"])
def test_the_shipped_demo_and_a_user_directory_are_named_alike_for_every_loader(source: str) -> None:
    assert dataset_name(source, None) == f"{source}-demo"
    assert dataset_name(source, "/data/physionet/my-tables") == f"{source}:my-tables"
    assert dataset_name(source, Path("/data/physionet/my-tables/")) == f"{source}:my-tables"


def test_the_current_directory_is_named_after_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert dataset_name("mimic3", ".") == f"mimic3:{tmp_path.resolve().name}"
