"""The units of a stage: which patients (and which hospital) each training unit sees.

A stage trained once (``repeat_per: null``) has a single unit, the whole split; a stage with
``repeat_per: hospital`` has one unit per hospital of the split's patients, trained on that
hospital's training patients, selected on its validation patients and scored on its test
patients. A patient's hospital is the hospital of its first visit (:func:`patient_hospitals`);
a hospital without training patients is still a unit (the runner skips it and predicts its
test patients with the initial weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medtoolkit.components.schema import DataSchema
from medtoolkit.config import StageParams
from medtoolkit.data.ehr import EHRData

__all__ = [
    "Unit",
    "patient_hospitals",
    "stage_units",
]


@dataclass(frozen=True)
class Unit:
    """What one training unit of a stage sees.

    Attributes:
        position: 0-based position among the stage's units.
        count: number of units of the stage.
        hospital: hospital index (None: the stage is trained once, on the whole split).
        label: the hospital's id as reported (its original id when the data knows it,
            else the index as text); ``""`` for a stage trained once.
        train, val, test: ``[P]`` int64 patient indices (ascending).
    """

    position: int
    count: int
    hospital: int | None
    label: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def patient_hospitals(data: EHRData) -> np.ndarray:
    """``[n_patients]`` int64 hospital index of each patient: that of its first visit.

    Raises:
        ValueError: the data has no hospital column.
    """
    if data.hospital is None:
        raise ValueError(f"data {data.name!r} has no hospital column")
    firsts = data.visit_offsets[:-1]
    hospitals = np.zeros(data.n_patients, dtype=np.int64)
    has_visits = data.visit_offsets[1:] > firsts
    hospitals[has_visits] = data.hospital[firsts[has_visits]]
    return hospitals


def _hospital_label(schema: DataSchema, hospital: int) -> str:
    """The hospital's original id from ``schema.hospital_ids`` when known, else its index as text."""
    ids = getattr(schema, "hospital_ids", ()) or ()
    return str(ids[hospital]) if 0 <= hospital < len(ids) else str(hospital)


def stage_units(stage: StageParams, split: Any, data: EHRData, schema: DataSchema) -> list[Unit]:
    """The units of ``stage`` on ``split``: the whole split, or one per hospital of its patients.

    Hospitals are those of the split's train, validation and test patients, ascending; one
    without training patients is still a unit (it is skipped, but its test patients are
    predicted with the initial weights).

    Raises:
        ValueError: ``repeat_per: hospital`` on data without hospitals (names the stage).
    """
    if stage.repeat_per is None:
        return [Unit(0, 1, None, "", split.train, split.val, split.test)]
    if data.hospital is None:
        raise ValueError(f"stage {stage.name!r} has repeat_per: hospital, but the data ({data.name!r}) has no "
                         "hospital column (e.g. dataset synthetic with n_hospitals > 0, or eicu)")
    owner = patient_hospitals(data)
    parts = {part: np.asarray(getattr(split, part), dtype=np.int64) for part in ("train", "val", "test")}
    hospitals = np.unique(np.concatenate([owner[p] for p in parts.values()]))
    units = []
    for position, hospital in enumerate(hospitals.tolist()):
        chosen = {part: patients[owner[patients] == hospital] for part, patients in parts.items()}
        units.append(Unit(position, len(hospitals), int(hospital), _hospital_label(schema, int(hospital)),
                          chosen["train"], chosen["val"], chosen["test"]))
    return units
