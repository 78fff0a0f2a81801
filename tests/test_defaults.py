"""Defaults match the docs and the presets: one truth for ``min_visits`` and the random seeds.

* every raw demo loader keeps single-visit patients by default (``min_visits=1``), as the
  presets and docs/data.rst say, so ``medtoolkit data info mimic3`` counts the patients the
  main job trains on (the run itself is checked in ``tests/test_demos.py``);
* a run without a ``task`` section (or without ``seeds``) trains one random split, as
  docs/concepts.rst says.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import medtoolkit
from medtoolkit.data.loaders.eicu import EICUDataset
from medtoolkit.data.loaders.mimic3 import MIMIC3Dataset
from medtoolkit.data.loaders.mimic4 import MIMIC4Dataset
from medtoolkit.presets import preset_config
from medtoolkit.tasks.medication import MedicationRecommendationTask

ROOT = Path(__file__).resolve().parents[1]
LOADERS = {"mimic3": MIMIC3Dataset, "mimic4": MIMIC4Dataset, "eicu": EICUDataset}
CORE_PRESETS = ("gamenet", "logistic_regression", "previous_visit")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _docs(name: str) -> str:
    """A docs page with its line breaks and indentation folded to single spaces."""
    return " ".join((ROOT / "docs" / name).read_text(encoding="utf-8").split())


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_raw_loaders_keep_single_visit_patients_by_default(name: str) -> None:
    assert LOADERS[name].Params().min_visits == 1


@pytest.mark.parametrize("preset", CORE_PRESETS)
def test_presets_use_the_loader_default(preset: str) -> None:
    dataset = preset_config(preset)["dataset"]
    assert dataset["type"] == "mimic3"
    assert dataset.get("min_visits", 1) == MIMIC3Dataset.Params().min_visits


def test_data_docs_state_the_mimic3_default() -> None:
    text = _docs("data.rst")
    default = MIMIC3Dataset.Params().min_visits
    assert f"``min_visits`` (default {default}," in text
    assert f"``min_visits={default}`` (default, presets)" in text
    assert "medtoolkit data info mimic3 -o min_visits" not in text


def test_task_default_is_one_seed_and_the_docs_say_so() -> None:
    seeds = MedicationRecommendationTask.Params().seeds
    assert seeds == [0]
    assert f"``seeds`` defaults to ``{seeds}``, one split" in _docs("concepts.rst")
    assert "default [0]: one split" in MedicationRecommendationTask.Params.model_fields["seeds"].description


TINY: dict[str, Any] = {
    "name": "defaults",
    "device": "cpu",
    "dataset": {"type": "synthetic", "n_patients": 40, "n_diagnoses": 20, "n_procedures": 10, "n_drugs": 8,
                "seed": 0, "mean_diagnoses": 4, "mean_procedures": 2, "mean_medications": 3, "n_ddi_pairs": 4,
                "n_substructures": 0, "n_conditions": 3},
    "model": {"type": "logistic_regression"},
    "losses": [{"type": "bce"}],
    "trainer": {"epochs": 1, "batch_size": 16, "progress": "none"},
    "eval": {"bootstrap_rounds": 2},
}


@pytest.mark.parametrize(
    "task", [None, {"type": "medication_recommendation"}, {"type": "medication_recommendation", "protocol": "random"}]
)
def test_a_dict_config_without_seeds_trains_one_split(task: dict[str, Any] | None) -> None:
    config = dict(TINY, **({"task": task} if task is not None else {}))
    result = medtoolkit.build(config).run(progress=False)
    assert result.metrics["protocol"]["name"] == "random"
    assert result.metrics["protocol"]["splits"] == ["seed0"]
    assert list(result.models) == ["seed0"] and len(result.metrics["epoch_seconds"]) == 1


def test_mimic3_field_description_names_the_default_and_safedrugs_value() -> None:
    description = MIMIC3Dataset.Params.model_fields["min_visits"].description or ""
    assert re.search(r"1 keeps single-visit patients", description)
    assert "SafeDrug" in description
