"""Shared fixtures. Tests that need ``../shared/data`` skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$MEDTOOLKIT_SHARED_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("MEDTOOLKIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def safedrug_dir() -> Path:
    """The processed MIMIC-III benchmark directory (skips when absent)."""
    path = shared_data_dir() / "mimic3-safedrug"
    if not (path / "records_final.pkl").exists():
        pytest.skip(f"processed MIMIC-III benchmark not found at {path}")
    return path
