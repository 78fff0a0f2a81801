"""Package task scorings (nearest, top_k, model) and model similarity on the hand data of test_package_task."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from medtoolkit.components.params import Node
from medtoolkit.components.recommenders.logistic_regression import LogisticRegressionRecommender
from medtoolkit.components.requirements import task_errors
from medtoolkit.config import EvalParams
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.data.ehr import EHRData
from medtoolkit.tasks.package_choice import top_k_sets
from medtoolkit.tasks.package_task import PackageRecommendationTask
from tests.tasks.test_package_task import SPLIT, data, make_predictions  # noqa: F401  (fixture)

P0 = [0.9, 0.4, 0.2, 0.7]
P1 = [0.9, 0.1, 0.6, 0.3]


def task(**params: Any) -> PackageRecommendationTask:
    return PackageRecommendationTask(PackageRecommendationTask.Params(**params))


def scores(the_task: PackageRecommendationTask, chosen: Any, data: EHRData) -> dict[str, float]:
    result = the_task.evaluate(chosen.probabilities, chosen.targets, chosen.visit_patient,
                               the_task.build_schema(data, SPLIT), EvalParams(bootstrap_rounds=0, averaging="visit"))
    return {metric: result[metric]["mean"] for metric in ("precision", "recall", "f1", "jaccard")}


class PositionEmbedder(LogisticRegressionRecommender):
    """Visit embedding = one-hot of the visit's position (at most two visits per patient here)."""

    def visit_embedding(self, batch: PaddedBatch) -> torch.Tensor:
        b, t = batch.visit_mask.shape
        return torch.eye(2)[:t].expand(b, t, 2).clone()


class SizeScorer(LogisticRegressionRecommender):
    """A package scorer preferring larger packages; records its inputs."""

    scores_packages = True

    def score_packages(self, batch: PaddedBatch, graphs: Any, pair_visit: torch.Tensor,
                       pair_graph: torch.Tensor) -> torch.Tensor:
        self.calls = getattr(self, "calls", []) + [(pair_visit.tolist(), pair_graph.tolist(), graphs.x.tolist(),
                                                    graphs.ptr.tolist())]
        return torch.diff(graphs.ptr).float()[pair_graph]


def test_nearest_takes_the_single_nearest_visits_package(data: EHRData) -> None:
    # visit 0 -> v0 (cosine 1): package 0 {0, 1}; visit 1 -> v2 and v3 tie (0.816): the lower, v2, package 2 {2}
    the_task = task(scoring="nearest")
    chosen = the_task.choose_packages(make_predictions([P0, P1]), data, SPLIT)
    np.testing.assert_array_equal(chosen.probabilities, [[1, 1, 0, 0], [0, 0, 1, 0]])
    # {0,1} vs true {3}: all 0; {2} vs {2,3}: precision 1, recall 1/2, F1 2/3, Jaccard 1/2
    assert scores(the_task, chosen, data) == pytest.approx({"precision": 0.5, "recall": 0.25, "f1": 1 / 3,
                                                            "jaccard": 0.25})
    assert the_task.prediction_table()["n_candidates"].tolist() == [1, 1]


def test_top_k_takes_the_most_probable_drugs(data: EHRData) -> None:
    # default k = round(mean training set size 1.5) = 2: visit 0 {0, 3}, visit 1 {0, 2}
    the_task = task(scoring="top_k")
    chosen = the_task.choose_packages(make_predictions([P0, P1]), data, SPLIT)
    np.testing.assert_array_equal(chosen.probabilities, [[1, 0, 0, 1], [1, 0, 1, 0]])
    # {0,3} vs {3}: P 1/2, R 1, F1 2/3, J 1/2; {0,2} vs {2,3}: P 1/2, R 1/2, F1 1/2, J 1/3
    assert scores(the_task, chosen, data) == pytest.approx({"precision": 0.5, "recall": 0.75, "f1": 7 / 12,
                                                            "jaccard": 5 / 12})
    table = the_task.prediction_table()
    assert table["package"].tolist() == [-1, -1] and table["generated"].tolist() == [0, 0]
    one = task(scoring="top_k", top_k=1).choose_packages(make_predictions([P0, P1]), data, SPLIT)
    np.testing.assert_array_equal(one.probabilities, [[1, 0, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(top_k_sets(np.array([[0.5, 0.5, 0.1]]), 1), [[True, False, False]])


def test_model_scoring_calls_the_package_scorer_with_the_pairs(data: EHRData) -> None:
    pytest.importorskip("torch_geometric")
    the_task = task(scoring="model", k_neighbours=2, similarity="codes")
    model = SizeScorer(schema=the_task.build_schema(data, SPLIT))
    chosen = the_task.choose_packages(make_predictions([P0, P1]), data, SPLIT, model=model)
    # candidates: visit 0 {0,1} (package 0), {0} (1); visit 1 {2} (2), {2,3} (3); the larger wins
    np.testing.assert_array_equal(chosen.probabilities, [[1, 1, 0, 0], [0, 0, 1, 1]])
    # distinct sets in byte order: {2} (0b0010), {2,3} (0b0011), {0} (0b1000), {0,1} (0b1100)
    assert model.calls == [([0, 0, 1, 1], [3, 2, 0, 1], [2, 2, 3, 0, 0, 1], [0, 1, 3, 4, 6])]
    assert the_task.prediction_table() is None  # until the evaluation
    # {0,1} vs {3}: 0; {2,3} vs {2,3}: 1
    assert scores(the_task, chosen, data) == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                                            "jaccard": 0.5})
    assert the_task.prediction_table()["package"].tolist() == [0, 3]


def test_model_similarity_on_the_fly_and_from_the_fitted_index(data: EHRData) -> None:
    # training keys by position: v0 [1,0], v1 [0,1], v2 [1,0], v3 [1,0]; visit 0 [1,0] -> v0 (ties: lower);
    # visit 1 [0,1] -> v1: package 1 {0} (codes similarity would give v2's {2})
    the_task = task(scoring="nearest")  # similarity auto -> model
    model = PositionEmbedder(schema=the_task.build_schema(data, SPLIT))
    chosen = the_task.choose_packages(make_predictions([P0, P1]), data, SPLIT, model=model)
    np.testing.assert_array_equal(chosen.probabilities, [[1, 1, 0, 0], [1, 0, 0, 0]])
    model.fit_neighbour_index(data, SPLIT.train)
    again = the_task.choose_packages(make_predictions([P0, P1]), data, SPLIT, model=model)
    np.testing.assert_array_equal(again.probabilities, chosen.probabilities)
    # a different fitted index is what is read: v0 [0,1], v1 [1,0], v2 [0,1], v3 [0,1]
    model.register_fitted_state("neighbour_keys", torch.tensor([[0.0, 1], [1, 0], [0, 1], [0, 1]]))
    swapped = the_task.choose_packages(make_predictions([P0, P1]), data, SPLIT, model=model)
    np.testing.assert_array_equal(swapped.probabilities, [[1, 0, 0, 0], [1, 1, 0, 0]])
    result = the_task.evaluate(swapped.probabilities, swapped.targets, swapped.visit_patient,
                               the_task.build_schema(data, SPLIT), EvalParams(bootstrap_rounds=0))
    assert result["packages"]["similarity"] == "model"


def test_model_settings_need_a_capable_recommender(data: EHRData) -> None:
    errors = task_errors(Node.of(LogisticRegressionRecommender), Node.of(PackageRecommendationTask, scoring="model"))
    task_name, model_name = Node.of(PackageRecommendationTask).type, Node.of(LogisticRegressionRecommender).type
    assert [(e.path, e.message) for e in errors] == [
        ("task", f"task {task_name!r} cannot use recommender {model_name!r}: task.scoring 'model' needs a package "
                 f"scorer (a recommender with scores_packages = True); use scoring 'likelihood'"),
    ]
    assert "needs a recommender with a visit embedding" in task_errors(
        Node.of(LogisticRegressionRecommender), Node.of(PackageRecommendationTask, similarity="model"))[0].message
    assert task_errors(Node.of(SizeScorer), Node.of(PackageRecommendationTask, scoring="model")) == []
    with pytest.raises(ValueError, match="task.similarity 'model' needs a recommender with a visit embedding"):
        task(similarity="model").choose_packages(make_predictions([P0, P1]), data, SPLIT)


def test_a_missing_relations_directory_is_refused_at_schema_time(data: EHRData, tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match=r"task.relations: directory .*nowhere.* not found"):
        task(relations=str(tmp_path / "nowhere")).build_schema(data, SPLIT)


def test_generation_in_the_task_marks_generated_choices(data: EHRData) -> None:
    # visit 0: S1 {0,1}, {0}; l = 0, 3, 1, 2; drug 1 is in 1/2 packages (rare at 0.5) and ranks 2 >= low_rank 2:
    # removed; the top-1 drug 0 (L 0 - l 0 >= gap 0) is in already: S2 = {0}, {0}, nothing new.
    # visit 1: S1 {2}, {2,3}; l = 0, 2, 3, 1: drug 3 (share 1/2, rank 2) removed, drug 0 added: S2 = {0, 2} (new);
    # S3 adds nothing (drug 0 is in) and splits nothing (antagonism 2-3, but 3 is out)
    the_task = task(k_neighbours=2, generate=True,
                    generation={"rare_share": 0.5, "low_rank": 2, "top_n": 1, "popularity_gap": 0})
    chosen = the_task.choose_packages(make_predictions([P0, P1]), data, SPLIT)
    # visit 0 keeps {0} (0.1296 beats {0,1}); visit 1: {0, 2}: .9 .9 .6 .7 = 0.3402 beats {2}: 0.0378
    np.testing.assert_array_equal(chosen.probabilities, [[1, 0, 0, 0], [1, 0, 1, 0]])
    result = the_task.evaluate(chosen.probabilities, chosen.targets, chosen.visit_patient,
                               the_task.build_schema(data, SPLIT), EvalParams(bootstrap_rounds=0))
    assert result["packages"]["generated_share"] == 0.5
    table = the_task.prediction_table()
    assert table["package"].tolist() == [1, -1] and table["generated"].tolist() == [0, 1]
    assert table["drugs"].tolist() == ["M0", "M0 M2"]
