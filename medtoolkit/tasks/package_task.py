"""Drug package recommendation as a task: choose one medication set per test visit.

The ``package_recommendation`` task keeps the splits, the schema and the training loop of
:class:`~medtoolkit.tasks.medication.MedicationRecommendationTask`; only the test prediction
differs. For every test visit:

1. The recommender's per-drug probabilities ``p`` ``[n_drugs]`` are computed as in the
   medication task (:meth:`~medtoolkit.components.base.Task.predict`).
2. The **packages** are the distinct medication sets of the split's **training** visits
   (:class:`~medtoolkit.tasks.packages.PackageIndex`; test and validation visits never add
   a package), built once per split.
3. The **neighbours** of the visit are the ``k_neighbours`` most similar training **visits**
   by cosine similarity (:func:`~medtoolkit.tasks.packages.nearest_keys`), and its
   **candidates** their distinct packages (:func:`~medtoolkit.tasks.packages.visit_candidates`).
   ``similarity``: ``codes`` compares the L2-normalised diagnosis+procedure multi-hots of the
   visits; ``model`` the recommender's visit embedding
   (:meth:`~medtoolkit.components.base.Recommender.visit_embedding`; training keys from the
   fitted index :meth:`~medtoolkit.components.base.Recommender.neighbour_index`, or embedded
   on the fly when it is missing); ``auto`` (default) is ``model`` when the recommender
   provides a visit embedding, else ``codes``.
4. With ``generate: true`` the candidates are widened by package generation
   (:mod:`medtoolkit.tasks.package_generation`); a chosen set outside the neighbours'
   packages is *generated*.
5. ``scoring`` chooses the package:

   * ``likelihood`` (default): the candidate with the highest Bernoulli log-likelihood under
     ``p`` (``sum_{d in package} log p_d + sum_{d not in package} log (1 - p_d)``, ``p``
     clipped to ``[1e-6, 1 - 1e-6]``);
   * ``model``: the candidate the recommender scores highest
     (:meth:`~medtoolkit.components.base.Recommender.score_packages` on the package graphs
     of the batch's distinct candidates, :mod:`medtoolkit.tasks.package_graphs`);
   * ``nearest``: the package of the single nearest training visit (no choice);
   * ``top_k``: the ``top_k`` drugs of highest ``p`` (default: the mean training set size,
     rounded), not chosen among candidates;
   * ``threshold``: no package at all: the per-drug probabilities are returned unchanged and
     evaluation thresholds them (``eval.threshold``), so a multi-label recommender is scored
     as such on the same test visits (no ``"packages"`` report entry).

   Ties go to the first candidate: the lower package id, then generated sets.

The returned :class:`~medtoolkit.training.predict.Predictions` hold the chosen sets as 0/1
floats in ``probabilities``, so evaluation at any threshold in ``(0, 1)`` scores exactly the
chosen sets: Jaccard, precision, recall and F1 are the per-visit package metrics (the same
numbers as :func:`~medtoolkit.tasks.packages.package_scores`), DDI rate and the average
number of drugs those of the chosen sets, PR-AUC that of a 0/1 score (not informative).
:meth:`PackageRecommendationTask.evaluate` adds a ``"packages"`` entry and
:meth:`PackageRecommendationTask.prediction_table` the per-visit table the pipeline writes
as ``predictions_<split>.csv``.

Batch items: the task provides ``"package_graphs"`` (:meth:`PackageRecommendationTask.collate_fn`),
the graphs of every real visit's medication set under the split's
:class:`~medtoolkit.tasks.package_graphs.PackageGraphRules` (training counts, drug
relations from ``task.relations`` or the DDI matrix, ``task.graph_threshold``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from medtoolkit.components.base import Recommender
from medtoolkit.components.schema import DataSchema
from medtoolkit.components.statistics import code_counts, pair_counts
from medtoolkit.config import EvalParams
from medtoolkit.data.batching import PaddedBatch, iterate_batches
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.tasks.medication import MedicationRecommendationTask, Split, visits_of
from medtoolkit.tasks.package_choice import Candidates, choose_best, choose_by_likelihood, top_k_sets
from medtoolkit.tasks.package_generation import GenerationParams, descending_rank, generate_candidates
from medtoolkit.tasks.package_graphs import PackageGraphRules, build_package_graphs, package_graph_rules
from medtoolkit.tasks.package_relations import task_relations
from medtoolkit.tasks.packages import PackageIndex, _row_keys, nearest_keys, visit_candidates

if TYPE_CHECKING:
    from collections.abc import Callable

    from medtoolkit.training.predict import Predictions

#: the batch item this task provides: the package graphs of a batch's real visits
PACKAGE_GRAPHS = "package_graphs"
_BLOCK_VISITS = 4096  # test visits (or training visits) per vectorised block
_T = TypeVar("_T")


def visit_features(data: EHRData, visits: np.ndarray) -> np.ndarray:
    """``[len(visits), n_diagnoses + n_procedures]`` float32 multi-hot of diagnoses and procedures (blockwise)."""
    visits = np.asarray(visits, dtype=np.int64)
    width = len(data.vocabularies[DIAGNOSES]) + len(data.vocabularies[PROCEDURES])
    blocks = [np.concatenate([data.multi_hot(DIAGNOSES, visits[s:s + _BLOCK_VISITS]),
                              data.multi_hot(PROCEDURES, visits[s:s + _BLOCK_VISITS])], axis=1)
              for s in range(0, len(visits), _BLOCK_VISITS)]
    return np.concatenate(blocks).astype(np.float32) if blocks else np.zeros((0, width), np.float32)


def _concat(parts: list[Candidates], n_drugs: int) -> Candidates:
    """One :class:`Candidates` of consecutive blocks of visits."""
    if not parts:
        return Candidates(np.zeros(1, np.int64), np.zeros((0, n_drugs), bool), np.zeros(0, np.int64))
    shifts = np.cumsum([0] + [int(part.offsets[-1]) for part in parts[:-1]])
    offsets = np.concatenate([parts[0].offsets[:1]] + [part.offsets[1:] + shift for part, shift in zip(parts, shifts)])
    return Candidates(offsets, np.concatenate([part.sets for part in parts]),
                      np.concatenate([part.package for part in parts]))


class _PerObject(Generic[_T]):
    """Values built once per owner object (a split or a schema), keyed by identity.

    The owner is kept beside its value, so an id recycled by a new object after the old one
    was freed is never mistaken for it.
    """

    def __init__(self) -> None:
        self._store: dict[int, tuple[Any, _T]] = {}

    def get(self, owner: Any, build: "Callable[[], _T]") -> _T:
        """The value of ``owner``, built with ``build()`` the first time."""
        cached = self._store.get(id(owner))
        if cached is not None and cached[0] is owner:
            return cached[1]
        value = build()
        self._store[id(owner)] = (owner, value)
        return value


def _recommender(model: torch.nn.Module | None) -> Recommender | None:
    """The recommender inside ``model`` (itself, or the first one among an adapter's modules)."""
    if model is None:
        return None
    return next((m for m in model.modules() if isinstance(m, Recommender)), None)


def _has_visit_embedding(recommender: type) -> bool:
    return getattr(recommender, "visit_embedding", None) is not Recommender.visit_embedding


@dataclass(frozen=True, eq=False)
class TrainingPackages:
    """What a split's training visits give the package task (built once per split).

    Attributes:
        index: the training packages (:class:`PackageIndex`, visits in ``visits`` order).
        visits: ``[V]`` int64 global ids of the training visits, ascending.
        mean_set_size: mean size of the training medication sets.
        frequency_rank: ``[n_drugs]`` int64 position of each drug by descending training count.
    """

    index: PackageIndex
    visits: np.ndarray
    mean_set_size: float
    frequency_rank: np.ndarray

    @classmethod
    def of_split(cls, data: EHRData, split: Split) -> "TrainingPackages":
        visits = visits_of(data, split.train)
        owners = np.repeat(split.train, data.visits_per_patient[split.train])
        medications = np.concatenate(
            [data.multi_hot(MEDICATIONS, visits[s:s + _BLOCK_VISITS]) > 0 for s in range(0, len(visits), _BLOCK_VISITS)]
        ) if len(visits) else np.zeros((0, data.n_drugs), dtype=bool)
        index = PackageIndex.from_visits(medications, owners)
        drug_counts = (index.packages * index.counts[:, None]).sum(axis=0)
        mean_size = float(drug_counts.sum() / max(len(visits), 1))
        return cls(index, visits, mean_size, descending_rank(drug_counts))

    def rows_of(self, visits: np.ndarray) -> np.ndarray:
        """Training-visit rows of global visit ids.

        Raises:
            ValueError: some id is not a training visit of the split (e.g. a stale fitted index).
        """
        rows = np.searchsorted(self.visits, visits)
        rows = np.minimum(rows, max(len(self.visits) - 1, 0))
        if len(visits) and (len(self.visits) == 0 or (self.visits[rows] != visits).any()):
            raise ValueError("the recommender's neighbour index holds visits that are not training visits of this "
                             "split (fitted on other patients?)")
        return rows


def add_package_graphs(batch: PaddedBatch, rules: PackageGraphRules) -> PaddedBatch:
    """``batch`` with ``items["package_graphs"]``: one graph per real visit's medication set.

    Args:
        batch: a CPU batch.
        rules: the split's :class:`~medtoolkit.tasks.package_graphs.PackageGraphRules`.

    Returns:
        a new batch (the input is unchanged) whose item is a ``torch_geometric`` ``Batch``
        of ``batch.n_visits`` graphs in row-major ``visit_mask`` order.
    """
    sets = batch.medications[batch.visit_mask] > 0
    graphs = build_package_graphs(sets, rules)
    return dataclasses.replace(batch, items={**batch.items, PACKAGE_GRAPHS: graphs})


class PackageRecommendationTask(MedicationRecommendationTask):
    """Recommend one medication set per test visit among its neighbours' packages (see the module docstring).

    Splits, schema, training and validation are those of the medication task; test
    prediction chooses one set per test visit and reports it as 0/1 scores.
    """

    #: the prediction table of a :meth:`predict` call covers all its visits: never split across ranks
    predicts_in_parts = False

    class Params(MedicationRecommendationTask.Params):
        """The medication task's parameters plus the package steps.

        Attributes:
            k_neighbours: nearest training visits whose packages are the candidates of a
                test visit (the paper's K = 10); at most the number of training visits.
            similarity: ``"auto"``, ``"codes"`` or ``"model"`` (see the module docstring).
            scoring: ``"likelihood"``, ``"model"``, ``"nearest"``, ``"top_k"`` or ``"threshold"``.
            top_k: drugs per set with ``scoring: top_k`` (None: the mean training set size, rounded).
            graph_threshold: co-occurrence proportion above which two drugs of a package graph
                are joined (:func:`~medtoolkit.tasks.package_graphs.package_graph_rules`).
            relations: directory of DeepDDI-format typed DDI files (``Drugbank.txt``,
                ``Interaction_information.csv``, ``drug_smiles.csv``; relative to the current
                directory); None: the DDI matrix's pairs as antagonism only.
            generate: widen the candidates by package generation.
            generation: the generation settings.
        """

        k_neighbours: int = Field(10, ge=1, description="nearest training visits giving the candidate packages")
        similarity: Literal["auto", "codes", "model"] = Field(
            "auto", description="neighbour similarity: 'codes' (diagnosis+procedure multi-hots), 'model' (visit "
                                "embedding) or 'auto' (model when the recommender has a visit embedding)")
        scoring: Literal["likelihood", "model", "nearest", "top_k", "threshold"] = Field(
            "likelihood", description="'likelihood' (Bernoulli log-likelihood under the model), 'model' (the "
                                      "recommender's package scorer), 'nearest' (nearest visit's package), "
                                      "'top_k' (the top_k most probable drugs) or 'threshold' (per-drug "
                                      "probabilities at eval.threshold, no package)")
        top_k: int | None = Field(None, ge=1, description="drugs per set for scoring top_k (None: mean training set size)")
        graph_threshold: float = Field(
            0.01, ge=0.0, le=1.0,
            description="co-occurrence proportion above which two drugs of a package are joined in its graph",
        )
        relations: str | None = Field(
            None, description="directory of DeepDDI-format typed DDI files (None: the DDI matrix as antagonism only)"
        )
        generate: bool = Field(False, description="widen the candidates by package generation")
        generation: GenerationParams = Field(default_factory=GenerationParams, description="package generation settings")

    params: "PackageRecommendationTask.Params"

    #: the candidate step only: a finished run can be re-scored with other values
    prediction_params = frozenset({"k_neighbours", "similarity", "scoring", "top_k", "generate", "generation"})

    def __init__(self, params: Any = None, schema: DataSchema | None = None) -> None:
        super().__init__(params, schema)
        self._training: _PerObject[TrainingPackages] = _PerObject()  # per split
        self._code_keys: _PerObject[np.ndarray] = _PerObject()  # per split
        self._rules: _PerObject[PackageGraphRules] = _PerObject()  # per schema
        self._relations: _PerObject[tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]] = _PerObject()
        self._table: pd.DataFrame | None = None
        self._reset_stats()

    def _reset_stats(self) -> None:
        self._stats: dict[str, Any] = {"visits": 0, "candidates": 0, "true_among": 0, "generated": 0,
                                       "n_train_packages": None, "similarity": None}
        self._rows: list[pd.DataFrame] = []

    @classmethod
    def recommender_error(cls, params: Any, recommender: type) -> str | None:
        """``scoring: model`` needs a package scorer; ``similarity: model`` a visit embedding."""
        if params.scoring == "model" and not getattr(recommender, "scores_packages", False):
            return ("task.scoring 'model' needs a package scorer (a recommender with scores_packages = True); "
                    "use scoring 'likelihood'")
        if params.similarity == "model" and not _has_visit_embedding(recommender):
            return "task.similarity 'model' needs a recommender with a visit embedding; use similarity 'codes'"
        return None

    def build_schema(self, data: EHRData, split: Split) -> DataSchema:
        """The medication task's schema; ``task.relations`` is read here, so a missing directory
        or a malformed file is refused before any training (the relations are cached per schema)."""
        schema = super().build_schema(data, split)
        if self.params.relations is not None:
            self.relations(schema)  # resolves the directory (task_relations) and reads the files
        return schema

    def training_packages(self, data: EHRData, split: Split) -> TrainingPackages:
        """The packages of ``split``'s training visits (cached per split)."""
        return self._training.get(split, lambda: TrainingPackages.of_split(data, split))

    # ------------------------------------------------------------------ batch items
    @classmethod
    def batch_items_provided(cls, params: Any) -> frozenset[str]:
        """``{"package_graphs"}``: the package graph of every real visit's medication set."""
        return frozenset({PACKAGE_GRAPHS})

    def graph_rules(self, schema: DataSchema) -> PackageGraphRules:
        """The package-graph rules of ``schema``'s training split (built once per schema).

        From the training medication counts (``schema.require_statistic``) and the drug
        relations (:meth:`relations`), with ``task.graph_threshold``.
        """
        return self._rules.get(schema, lambda: self._build_graph_rules(schema))

    def _build_graph_rules(self, schema: DataSchema) -> PackageGraphRules:
        component = f"task {self.registered_name or type(self).__name__!r}"
        pairs = schema.require_statistic(pair_counts(MEDICATIONS, MEDICATIONS), component)
        counts = schema.require_statistic(code_counts(MEDICATIONS), component)
        relation, covered, _ = self.relations(schema)
        return package_graph_rules(pairs, counts, relation, covered, self.params.graph_threshold)

    def relations(self, schema: DataSchema) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
        """The drug relations of ``schema``'s drugs: ``(relation [n, n] int8 | None, covered [n] bool | None, report)``.

        With ``task.relations`` (a DeepDDI-format directory) the signed relations of
        :func:`~medtoolkit.knowledge.ddi_types.relations_from_directory`; otherwise the DDI
        matrix as antagonism only (every drug covered), or None without a DDI matrix.
        """
        return self._relations.get(schema, lambda: task_relations(self.params.relations, schema))

    def collate_fn(
        self, data: EHRData, split: Any, schema: DataSchema, items: frozenset[str],
    ) -> "Callable[[PaddedBatch], PaddedBatch] | None":
        """Adds ``batch.items["package_graphs"]``: the package graphs of the batch's real visits.

        One graph per real visit (row-major order of ``batch.visit_mask``), its medication
        set cut with :func:`~medtoolkit.tasks.package_graphs.build_package_graphs` under
        :meth:`graph_rules` (training statistics of ``schema``; ``split`` is not read).

        Raises:
            ValueError: an item other than ``"package_graphs"`` is requested.
        """
        unknown = sorted(set(items) - {PACKAGE_GRAPHS})
        if unknown:
            raise ValueError(f"task 'package_recommendation' provides the batch item {PACKAGE_GRAPHS!r} only, "
                             f"not {', '.join(map(repr, unknown))}")
        if not items:
            return None
        rules = self.graph_rules(schema)
        return functools.partial(add_package_graphs, rules=rules)

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        model: Recommender,
        data: EHRData,
        split: Split,
        patients: np.ndarray,
        batch_size: int,
        device: torch.device,
    ) -> "Predictions":
        """The chosen set of every test visit, as 0/1 scores.

        Runs the default per-drug prediction, then :meth:`choose_packages` with the
        packages and neighbours of ``split``'s training visits.
        """
        predictions = super().predict(model, data, split, patients, batch_size, device)
        if self.params.scoring == "threshold":
            return predictions
        return self.choose_packages(predictions, data, split, model, batch_size, device)

    def choose_packages(
        self,
        predictions: "Predictions",
        data: EHRData,
        split: Split,
        model: torch.nn.Module | None = None,
        batch_size: int = 256,
        device: torch.device | str = "cpu",
    ) -> "Predictions":
        """Replace per-drug probabilities by the chosen set of each visit.

        Args:
            predictions: per-drug predictions of test visits of ``split`` (patient order,
                then visit order, as :func:`~medtoolkit.training.predict.predict` gives).
            data: the dataset.
            split: the split whose training visits give the packages and the neighbours.
            model: the recommender (on ``device``), needed for ``similarity``/``scoring``
                ``model`` and for generation's statistics (its schema); None: codes and
                likelihood only.
            batch_size: patients per forward pass when the model is asked again.
            device: where batches go.

        Returns:
            the same predictions with ``probabilities`` the chosen sets (0/1 float32). The
            candidate statistics and the per-visit rows are kept for :meth:`evaluate` and
            :meth:`prediction_table`.

        Raises:
            ValueError: ``task.k_neighbours`` exceeds the training visits, a predicted visit
                belongs to a training patient, or the model lacks what the settings need.
        """
        owners = np.asarray(predictions.visit_patient, dtype=np.int64)
        if np.isin(owners, split.train).any():
            raise ValueError(f"split {split.name!r}: packages are chosen for test visits, but some visits "
                             f"belong to training patients")
        training = self.training_packages(data, split)
        index = training.index
        recommender = _recommender(model)
        device = torch.device(device)
        probabilities = np.asarray(predictions.probabilities, dtype=np.float64)
        patients = owners[np.sort(np.unique(owners, return_index=True)[1])]
        scoring = self.params.scoring
        similarity = "none"
        if scoring == "top_k":
            k = self.params.top_k or max(1, int(round(training.mean_set_size)))
            candidates = Candidates(np.arange(len(owners) + 1, dtype=np.int64), top_k_sets(probabilities, k),
                                    np.zeros(len(owners), np.int64))
            candidates = dataclasses.replace(candidates, package=index.package_of(candidates.sets)
                                             if len(owners) else np.zeros(0, np.int64))
            chosen = np.arange(len(owners), dtype=np.int64)
            n_candidates = np.zeros(len(owners), dtype=np.int64)
        else:
            similarity = self._similarity(recommender)
            query, keys = self._keys(similarity, model, data, split, training, patients, owners, predictions,
                                     batch_size, device)
            k = 1 if scoring == "nearest" else self.params.k_neighbours
            if k > len(training.visits):
                raise ValueError(f"task.k_neighbours = {k} exceeds the {len(training.visits)} training visits of "
                                 f"split {split.name!r}; lower task.k_neighbours")
            candidates = self._candidates(query, keys, k, probabilities, training, recommender, data, split)
            n_candidates = np.diff(candidates.offsets)
            if scoring == "model":
                scores = self._model_scores(recommender, candidates, data, patients, batch_size, device, split)
                chosen = choose_best(scores, candidates.offsets)
            else:  # likelihood; nearest has a single candidate
                chosen = choose_by_likelihood(probabilities, candidates)
        self._record(predictions, data, candidates, chosen, n_candidates, index, similarity)
        return dataclasses.replace(predictions, probabilities=candidates.sets[chosen].astype(np.float32))

    def _similarity(self, recommender: Recommender | None) -> str:
        """``task.similarity`` with ``auto`` resolved for ``recommender``."""
        wanted = self.params.similarity
        has = recommender is not None and _has_visit_embedding(type(recommender))
        if wanted == "model" and not has:
            name = type(recommender).__name__ if recommender is not None else "no recommender"
            raise ValueError(f"task.similarity 'model' needs a recommender with a visit embedding ({name} has none)")
        return "model" if wanted == "model" or (wanted == "auto" and has) else "codes"

    def _keys(
        self, similarity: str, model: torch.nn.Module | None, data: EHRData, split: Split,
        training: TrainingPackages, patients: np.ndarray, owners: np.ndarray, predictions: "Predictions",
        batch_size: int, device: torch.device,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(query [Q, D], keys [V, D])``: the predicted visits' and the training visits' embeddings (keys in training-visit order)."""
        if similarity == "codes":
            visits = data.visit_offsets[owners] + np.asarray(predictions.visit_position, dtype=np.int64)
            keys = self._code_keys.get(split, lambda: visit_features(data, training.visits))
            return visit_features(data, visits), keys
        from medtoolkit.training.predict import embed_visits

        assert model is not None
        recommender = _recommender(model)
        query = embed_visits(model, data, patients, batch_size, device)
        fitted = recommender.neighbour_index() if recommender is not None else None
        if fitted is not None:
            fitted_keys, fitted_visits = fitted
            rows = training.rows_of(fitted_visits.cpu().numpy())
            if len(rows) != len(training.visits) or np.unique(rows).size != len(rows):
                raise ValueError("the recommender's neighbour index does not cover the split's training visits "
                                 "once each; refit it (fit_neighbour_index) on the split's training patients")
            keys = np.empty((len(rows), fitted_keys.shape[1]), dtype=np.float32)
            keys[rows] = fitted_keys.float().cpu().numpy()
        else:
            keys = embed_visits(model, data, split.train, batch_size, device).cpu().numpy()
        return query.cpu().numpy(), keys

    def _candidates(
        self, query: np.ndarray, keys: np.ndarray, k: int, probabilities: np.ndarray, training: TrainingPackages,
        recommender: Recommender | None, data: EHRData, split: Split,
    ) -> Candidates:
        """The candidates of every predicted visit (blockwise), generated ones included with ``task.generate``."""
        generate = self.params.generate and self.params.scoring != "nearest"
        if generate:
            schema = self._schema_of(recommender, data, split)
            cooccurrence = self.graph_rules(schema).cooccurrence.numpy()
            relation = self.relations(schema)[0]
        parts = []
        for start in range(0, len(query), _BLOCK_VISITS):
            stop = start + _BLOCK_VISITS
            neighbours = nearest_keys(query[start:stop], keys, k)
            offsets, package_ids = visit_candidates(training.index.visit_package, neighbours)
            block = Candidates.of_packages(training.index.packages, offsets, package_ids)
            if generate:
                block = generate_candidates(block, probabilities[start:stop], training.frequency_rank, cooccurrence,
                                            relation, self.params.generation, training.mean_set_size)
            parts.append(block)
        return _concat(parts, training.index.n_drugs)

    def _schema_of(self, recommender: Recommender | None, data: EHRData, split: Split) -> DataSchema:
        """The split's schema: the recommender's, or built anew without one."""
        schema = getattr(recommender, "schema", None)
        return schema if isinstance(schema, DataSchema) else self.build_schema(data, split)

    @torch.no_grad()
    def _model_scores(
        self, recommender: Recommender | None, candidates: Candidates, data: EHRData, patients: np.ndarray,
        batch_size: int, device: torch.device, split: Split,
    ) -> np.ndarray:
        """``[R]`` the recommender's score of every candidate row, one forward per batch of patients."""
        if recommender is None or not getattr(recommender, "scores_packages", False):
            name = type(recommender).__name__ if recommender is not None else "no recommender"
            raise ValueError(f"task.scoring 'model' needs a package scorer ({name} has scores_packages = False)")
        rules = self.graph_rules(self._schema_of(recommender, data, split))
        owner = candidates.owner
        scores = np.empty(len(owner), dtype=np.float64)
        was_training = recommender.training
        recommender.eval()
        first_visit = 0
        try:
            for batch in iterate_batches(data, patients, batch_size, sort_by_length=False):
                stop_visit = first_visit + batch.n_visits
                rows = slice(int(candidates.offsets[first_visit]), int(candidates.offsets[stop_visit]))
                sets = candidates.sets[rows]
                _, first, graph = np.unique(_row_keys(sets), return_index=True, return_inverse=True)
                graphs = build_package_graphs(sets[first], rules).to(device)
                value = recommender.score_packages(
                    batch.to(device), graphs, torch.from_numpy(owner[rows] - first_visit).to(device),
                    torch.from_numpy(graph.reshape(-1).astype(np.int64)).to(device))
                if tuple(value.shape) != (len(sets),):
                    raise ValueError(f"{type(recommender).__name__}.score_packages returned shape "
                                     f"{tuple(value.shape)}, expected ({len(sets)},) (one score per pair)")
                scores[rows] = value.float().cpu().numpy()
                first_visit = stop_visit
        finally:
            recommender.train(was_training)
        return scores

    def _record(
        self, predictions: "Predictions", data: EHRData, candidates: Candidates, chosen: np.ndarray,
        n_candidates: np.ndarray, index: PackageIndex, similarity: str,
    ) -> None:
        """Add the statistics and the per-visit rows of one prediction."""
        targets = np.asarray(predictions.targets, dtype=bool)
        owner = candidates.owner
        hit = (_row_keys(candidates.sets) == _row_keys(targets)[owner]) if len(owner) else np.zeros(0, bool)
        package = candidates.package[chosen]
        generated = package < 0
        if self.params.scoring == "top_k":
            generated = np.zeros(len(chosen), dtype=bool)
        stats = self._stats
        stats["visits"] += len(chosen)
        stats["candidates"] += int(n_candidates.sum())
        stats["true_among"] += int(np.unique(owner[hit]).size) if self.params.scoring != "top_k" else 0
        stats["generated"] += int(generated.sum())
        stats["n_train_packages"] = index.n_packages
        stats["similarity"] = similarity
        codes = np.asarray(data.vocabularies[MEDICATIONS].idx2word, dtype=object)
        sets = candidates.sets[chosen]
        drug_row, drug = np.nonzero(sets)
        words = pd.Series(codes[drug]).groupby(drug_row).agg(" ".join) if len(drug) else pd.Series(dtype=object)
        self._rows.append(pd.DataFrame({
            "patient": np.asarray(predictions.visit_patient, dtype=np.int64),
            "patient_id": np.asarray(data.patient_ids, dtype=object)[np.asarray(predictions.visit_patient,
                                                                                dtype=np.int64)],
            "visit": np.asarray(predictions.visit_position, dtype=np.int64),
            "package": package.astype(np.int64),
            "generated": generated.astype(np.int64),
            "n_candidates": n_candidates.astype(np.int64),
            "drugs": words.reindex(np.arange(len(chosen)), fill_value="").to_numpy(dtype=object),
        }))

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        probabilities: np.ndarray,
        targets: np.ndarray,
        visit_patient: np.ndarray,
        schema: DataSchema,
        eval_params: EvalParams | None = None,
        visit_group: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """The medication task's evaluation of the chosen sets, plus ``"packages"``.

        ``result["packages"]`` (present when :meth:`predict` ran since the last evaluation),
        over all visits predicted since then (the units of a stage together):
        ``k_neighbours``, ``scoring``, ``similarity`` (resolved; ``"none"`` for top_k),
        ``mean_candidates`` per visit, ``true_set_among_candidates`` (share of visits whose
        true set is a candidate), ``n_train_packages``, ``generated_share`` (share of chosen
        sets that are generated), ``graph_threshold`` and ``relations`` (``source``,
        ``coverage``, ``note``). The per-visit rows become :meth:`prediction_table`.
        """
        result = super().evaluate(probabilities, targets, visit_patient, schema, eval_params, visit_group)
        stats = self._stats
        if stats["n_train_packages"] is not None:
            n = stats["visits"]
            report = self.relations(schema)[2]
            result["packages"] = {
                "k_neighbours": self.params.k_neighbours,
                "scoring": self.params.scoring,
                "similarity": stats["similarity"],
                "mean_candidates": stats["candidates"] / n if n else float("nan"),
                "true_set_among_candidates": stats["true_among"] / n if n else float("nan"),
                "n_train_packages": int(stats["n_train_packages"]),
                "generated_share": stats["generated"] / n if n else float("nan"),
                "graph_threshold": self.params.graph_threshold,
                "relations": {key: report.get(key) for key in ("source", "coverage", "note")},
            }
            table = pd.concat(self._rows, ignore_index=True)
            self._table = table.sort_values(["patient", "visit"], kind="stable", ignore_index=True)
            self._reset_stats()
        return result

    def prediction_table(self) -> pd.DataFrame | None:
        """The per-visit choices of the last evaluation, or None before any.

        Columns: ``patient`` (patient index), ``patient_id`` (the dataset's identifier),
        ``visit`` (position), ``package`` (training
        package id, -1 when generated or, for top_k, when the set is no training package),
        ``generated`` (0/1), ``n_candidates``, ``drugs`` (space-separated drug codes).
        """
        return self._table
