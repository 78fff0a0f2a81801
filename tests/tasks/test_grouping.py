"""Grouped evaluation: per-hospital metrics, size bins, the task's ``groups`` and their combination over splits."""

from __future__ import annotations

import numpy as np
import pytest

from medtoolkit.components.schema import DataSchema
from medtoolkit.config import EvalParams
from medtoolkit.metrics import score_visits
from medtoolkit.tasks.grouping import (
    assign_bins,
    bin_bounds,
    bin_names,
    check_bins,
    combine_groups,
    group_scores,
)
from medtoolkit.tasks.medication import MedicationRecommendationTask
from medtoolkit.training.pipeline import combine_splits

# Five test visits, two drugs, threshold 0.5; hospital 1 has no test visit.
#   visit  hospital  target  probabilities  predicted  jaccard  precision recall f1   prauc  drugs  pairs(ddi)
#   0      0         {0}     .9 .1          {0}        1        1         1      1    1      1      0
#   1      0         {0,1}   .9 .2          {0}        1/2      1         1/2    2/3  1      1      0
#   2      2         {1}     .8 .6          {0,1}      1/2      1/2       1      2/3  1/2    2      1 (1)
#   3      2         {0}     .2 .7          {1}        0        0         0      0    1/2    1      0
#   4      0         {1}     .1 .9          {1}        1        1         1      1    1      1      0
TARGETS = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [0, 1]], dtype=bool)
PROBABILITIES = np.array([[0.9, 0.1], [0.9, 0.2], [0.8, 0.6], [0.2, 0.7], [0.1, 0.9]])
HOSPITAL = np.array([0, 0, 2, 2, 0])
SIZES = np.array([2, 7, 5])  # records per hospital in the data: hospital 0 is in "<=3", hospital 2 in ">3"
DDI = np.array([[0, 1], [1, 0]], dtype=np.float32)

HOSPITAL_0 = {"jaccard": 5 / 6, "prauc": 1.0, "f1": 8 / 9, "precision": 1.0, "recall": 5 / 6,
              "ddi_rate": 0.0, "avg_drugs": 1.0}
HOSPITAL_2 = {"jaccard": 1 / 4, "prauc": 1 / 2, "f1": 1 / 3, "precision": 1 / 4, "recall": 1 / 2,
              "ddi_rate": 1.0, "avg_drugs": 3 / 2}


def _groups(ddi: np.ndarray | None = DDI, ids: tuple[str, ...] = ()) -> dict:
    scores = score_visits(TARGETS, PROBABILITIES, 0.5, ddi)
    return group_scores(scores, HOSPITAL, SIZES, [3], ids)


def _assert_values(entry: dict, expected: dict) -> None:
    for metric, value in expected.items():
        assert entry[metric] == pytest.approx(value), metric


def test_bin_names_and_bounds() -> None:
    assert bin_bounds([1000, 2000]) == ["<=1000", "1001-2000", ">2000"]
    assert bin_names([1000, 2000]) == ["small", "medium", "large"]
    assert bin_names([3]) == bin_bounds([3]) == ["<=3", ">3"]
    assert bin_names([10, 20, 30]) == ["<=10", "11-20", "21-30", ">30"]
    assert bin_bounds([4, 5]) == ["<=4", "5", ">5"]
    assert bin_names([]) == ["any"]


def test_assign_bins_upper_bounds_are_inclusive_and_the_last_bin_open() -> None:
    sizes = np.array([1, 1000, 1001, 2000, 2001, 10**6])
    assert assign_bins(sizes, [1000, 2000]).tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("bins", [[2000, 1000], [1000, 1000], [0, 5]])
def test_bins_must_increase_and_be_positive(bins: list[int]) -> None:
    with pytest.raises(ValueError, match="eval.group_bins must be positive and strictly increasing"):
        check_bins(bins)


def test_group_scores_per_hospital_by_hand() -> None:
    groups = _groups()
    assert groups["by"] == "hospital" and groups["bins"] == [3]
    assert list(groups["per_group"]) == ["0", "2"]  # hospital 1 has no test visit
    first, third = groups["per_group"]["0"], groups["per_group"]["2"]
    assert (first["index"], first["size"], first["n_test"]) == (0, 2, 3)
    assert (third["index"], third["size"], third["n_test"]) == (2, 5, 2)
    _assert_values(first, HOSPITAL_0)
    _assert_values(third, HOSPITAL_2)


def test_group_scores_per_bin_is_the_mean_over_hospitals() -> None:
    per_bin = _groups()["per_bin"]
    assert list(per_bin) == ["<=3", ">3", "all"]
    assert (per_bin["<=3"]["bounds"], per_bin["<=3"]["hospitals"]) == ("<=3", 1)
    _assert_values(per_bin["<=3"], HOSPITAL_0)
    _assert_values(per_bin[">3"], HOSPITAL_2)
    assert (per_bin["all"]["bounds"], per_bin["all"]["hospitals"]) == ("all", 2)
    # a mean over hospitals, not over visits (the visit mean of Jaccard is 3/5)
    _assert_values(per_bin["all"], {"jaccard": 13 / 24, "prauc": 3 / 4, "f1": 11 / 18, "precision": 5 / 8,
                                    "recall": 2 / 3, "ddi_rate": 1 / 2, "avg_drugs": 5 / 4})


def test_group_scores_paper_bins_and_empty_bins() -> None:
    scores = score_visits(TARGETS, PROBABILITIES, 0.5, DDI)
    per_bin = group_scores(scores, HOSPITAL, SIZES, [1000, 2000])["per_bin"]
    assert list(per_bin) == ["small", "medium", "large", "all"]
    assert per_bin["small"]["hospitals"] == 2 and per_bin["small"]["jaccard"] == pytest.approx(13 / 24)
    assert per_bin["medium"] == {"bounds": "1001-2000", "hospitals": 0, "jaccard": None, "prauc": None,
                                 "f1": None, "precision": None, "recall": None, "ddi_rate": None,
                                 "avg_drugs": None}


def test_group_scores_names_hospitals_by_their_original_id() -> None:
    groups = _groups(ids=("H-10", "H-20", "H-30"))
    assert list(groups["per_group"]) == ["H-10", "H-30"]
    assert groups["per_group"]["H-30"]["index"] == 2


def test_group_scores_without_ddi_matrix_has_no_ddi_rate() -> None:
    groups = _groups(ddi=None)
    assert groups["per_group"]["0"]["ddi_rate"] is None
    assert all(entry["ddi_rate"] is None for entry in groups["per_bin"].values())
    assert groups["per_bin"]["all"]["jaccard"] == pytest.approx(13 / 24)


def test_group_scores_refuses_hospitals_outside_the_sizes() -> None:
    scores = score_visits(TARGETS, PROBABILITIES, 0.5, DDI)
    with pytest.raises(ValueError, match="outside \\[0, 2\\)"):
        group_scores(scores, HOSPITAL, SIZES[:2], [3])


# ---------------------------------------------------------------------------------- the task
def _schema(sizes: np.ndarray | None = SIZES) -> DataSchema:
    return DataSchema(vocab_sizes={"medications": 2}, n_drugs=2, ddi_adjacency=DDI, n_hospitals=3,
                      hospital_sizes=sizes)


def test_task_evaluate_adds_groups_with_group_by_hospital() -> None:
    task = MedicationRecommendationTask()
    settings = EvalParams(threshold=0.5, bootstrap_rounds=0, averaging="visit", group_by="hospital", group_bins=[3])
    result = task.evaluate(PROBABILITIES, TARGETS, np.arange(5), _schema(), settings, visit_group=HOSPITAL)
    assert result["jaccard"]["mean"] == pytest.approx(3 / 5)  # the ungrouped metrics are unchanged
    assert result["groups"] == _groups()
    plain = task.evaluate(PROBABILITIES, TARGETS, np.arange(5), _schema(), EvalParams(), visit_group=HOSPITAL)
    assert "groups" not in plain


def test_task_evaluate_group_by_hospital_needs_hospitals() -> None:
    task = MedicationRecommendationTask()
    settings = EvalParams(group_by="hospital")
    with pytest.raises(ValueError, match="visit_group is none"):
        task.evaluate(PROBABILITIES, TARGETS, np.arange(5), _schema(), settings, visit_group=None)
    with pytest.raises(ValueError, match="hospital_sizes is none"):
        task.evaluate(PROBABILITIES, TARGETS, np.arange(5), _schema(None), settings, visit_group=HOSPITAL)


# ---------------------------------------------------------------------------------- several splits
def _split_groups(small: float | None, all_: float, hospitals: int) -> dict:
    return {"by": "hospital", "bins": [3],
            "per_group": {"0": {"index": 0}},
            "per_bin": {"<=3": {"bounds": "<=3", "hospitals": hospitals, "jaccard": small, "ddi_rate": None},
                        "all": {"bounds": "all", "hospitals": 2, "jaccard": all_, "ddi_rate": None}}}


def test_combine_groups_mean_and_std_over_splits() -> None:
    combined = combine_groups([_split_groups(0.2, 0.5, 1), _split_groups(0.4, 0.7, 1),
                               _split_groups(None, 0.6, 0)])
    assert combined["by"] == "hospital" and combined["bins"] == [3]
    assert "per_group" not in combined
    small = combined["per_bin"]["<=3"]
    assert small["bounds"] == "<=3"
    assert small["jaccard"]["mean"] == pytest.approx(0.3) and small["jaccard"]["std"] == pytest.approx(0.1)
    assert small["hospitals"]["mean"] == pytest.approx(2 / 3)
    assert small["ddi_rate"] == {"mean": None, "std": None}
    everyone = combined["per_bin"]["all"]["jaccard"]
    assert everyone["mean"] == pytest.approx(0.6) and everyone["std"] == pytest.approx(np.std([0.5, 0.7, 0.6]))


def test_combine_splits_combines_groups_and_keeps_each_splits_hospitals() -> None:
    per_split = {
        name: {"jaccard": {"mean": value, "std": 0.0}, "ddi_rate": {"mean": None, "std": None},
               "groups": _split_groups(value, value, 1)}
        for name, value in (("seed0", 0.4), ("seed1", 0.6))
    }
    test = combine_splits(per_split)
    assert test["jaccard"] == {"mean": pytest.approx(0.5), "std": pytest.approx(0.1)}
    assert test["ddi_rate"] == {"mean": None, "std": None}
    assert test["groups"]["per_bin"]["all"]["jaccard"] == {"mean": pytest.approx(0.5), "std": pytest.approx(0.1)}
    assert "per_group" not in test["groups"]
    assert test["splits"]["seed1"]["groups"]["per_group"] == {"0": {"index": 0}}
    assert "groups" not in combine_splits({k: {"jaccard": v["jaccard"]} for k, v in per_split.items()})
