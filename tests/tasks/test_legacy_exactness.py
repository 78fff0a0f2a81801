"""Exactness against the field's measured reference points on processed MIMIC-III.

Needs ``../shared/data/mimic3-safedrug`` (skips without it). The "nearest" baseline of
GAMENet's ``baseline_near.py`` predicts each visit's medications as the previous visit's;
on the legacy test split (visits with a previous visit, visit-macro, no bootstrap) the
reference measured Jaccard 0.4691, F1 0.6268, precision 0.6576, recall 0.6558, DDI 0.0762,
20.56 drugs per visit over 876 patients / 1206 visits (patient-macro Jaccard 0.4649).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtoolkit.data.ehr import MEDICATIONS, EHRData
from medtoolkit.data.loaders.safedrug_pickle import SafeDrugPickleDataset
from medtoolkit.metrics import aggregate, ddi_rate, score_visits
from medtoolkit.tasks.medication import MedicationRecommendationTask, Split, visits_of


@pytest.fixture(scope="module")
def mimic3(safedrug_dir: Path) -> EHRData:
    return SafeDrugPickleDataset(SafeDrugPickleDataset.Params(root=safedrug_dir)).load(progress=False)


@pytest.fixture(scope="module")
def legacy(mimic3: EHRData) -> Split:
    (split,) = MedicationRecommendationTask(MedicationRecommendationTask.Params(protocol="legacy")).splits(mimic3)
    return split


def test_legacy_split_counts(mimic3: EHRData, legacy: Split) -> None:
    assert mimic3.n_patients == 6350
    assert legacy.counts(mimic3) == {
        "train_patients": 4233, "train_visits": 10489,
        "val_patients": 1059, "val_visits": 2279,
        "test_patients": 1058, "test_visits": 2264,
    }
    test_visits = visits_of(mimic3, legacy.test)
    truth = mimic3.multi_hot(MEDICATIONS, test_visits) > 0
    assert ddi_rate(truth, mimic3.knowledge.ddi_adjacency) == pytest.approx(0.075756, abs=5e-7)


def test_cooccurrence_from_training_split_only(mimic3: EHRData, legacy: Split) -> None:
    task = MedicationRecommendationTask(MedicationRecommendationTask.Params(protocol="legacy"))
    schema = task.build_schema(mimic3, legacy)
    # 5502 pairs from training visits; the shipped ehr_adj (all records) has 5616
    assert int(np.triu(schema.cooccurrence_adjacency, k=1).sum()) == 5502
    assert schema.n_drugs == 112 and schema.substructure_mask.shape == (112, 442)


def test_nearest_baseline_matches_reference(mimic3: EHRData, legacy: Split) -> None:
    visits = visits_of(mimic3, legacy.test)
    owner = np.repeat(legacy.test, mimic3.visits_per_patient[legacy.test])
    has_previous = visits != mimic3.visit_offsets[owner]
    current = visits[has_previous]
    targets = mimic3.multi_hot(MEDICATIONS, current) > 0
    previous = mimic3.multi_hot(MEDICATIONS, current - 1)  # 0/1 "probabilities"
    scores = score_visits(targets, previous, threshold=0.5, ddi_adjacency=mimic3.knowledge.ddi_adjacency)
    assert len(np.unique(owner[has_previous])) == 876 and len(current) == 1206

    by_visit = aggregate(scores, owner[has_previous], "visit")
    assert round(by_visit["jaccard"], 4) == 0.4691
    assert round(by_visit["f1"], 4) == 0.6268
    assert round(by_visit["precision"], 4) == 0.6576
    assert round(by_visit["recall"], 4) == 0.6558
    assert round(by_visit["ddi_rate"], 4) == 0.0762
    assert round(by_visit["avg_drugs"], 2) == 20.56

    by_patient = aggregate(scores, owner[has_previous], "patient")
    assert round(by_patient["jaccard"], 4) == 0.4649
    assert round(by_patient["f1"], 4) == 0.6222
