"""Fixtures of the knowledge tests (shared data skips cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[2]


def _shared_data_dir() -> Path:
    # same rule as tests/conftest.py: $MEDTOOLKIT_SHARED_DATA or <repo>/../shared/data
    return Path(os.environ.get("MEDTOOLKIT_SHARED_DATA", _REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def drug_knowledge_dir() -> Path:
    """``../shared/data/drug-knowledge`` with the unlicensed RxNorm maps (skips when absent)."""
    path = _shared_data_dir() / "drug-knowledge"
    if not (path / "ndc2rxnorm_mapping.txt").exists() or not (path / "ndc2atc_level4.zip").exists():
        pytest.skip(f"drug-knowledge maps not found at {path}")
    return path


@pytest.fixture(scope="session")
def mimic3_demo_prescriptions() -> Path:
    """MIMIC-III demo PRESCRIPTIONS.csv (skips when absent)."""
    path = _shared_data_dir() / "mimic3-demo" / "PRESCRIPTIONS.csv"
    if not path.exists():
        pytest.skip(f"MIMIC-III demo not found at {path}")
    return path
