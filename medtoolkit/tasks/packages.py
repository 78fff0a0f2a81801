"""Drug packages: the package index, similar-patient candidates and package metrics.

Building blocks of drug package recommendation (DPR, Zheng et al., "Drug Package
Recommendation via Interaction-aware Graph Induction"): instead of scoring drugs one by
one, a recommender picks a whole *package* - a medication set that doctors have
prescribed together - among the packages of the patients most similar to the query.

* :class:`PackageIndex`: the distinct medication sets of the **training** visits (the
  packages), how many visits prescribed each, and which packages each training patient
  received. Built without a Python loop over visits: every visit's multi-hot row is packed
  into bytes (:func:`numpy.packbits`) and the rows are made unique as fixed-size byte
  strings.
* :func:`nearest_keys`: the ``k`` keys (training visits, or patients) nearest to each query
  by cosine similarity of their embeddings (the paper takes ``k = 10``), blockwise over
  queries.
* :func:`visit_candidates`: the distinct packages of each query's neighbour training visits
  (the paper's candidate set; the package task's neighbours are visits).
* :func:`candidate_packages`: the union of neighbour *patients'* packages per query, as a
  CSR structure.
* :func:`package_scores`: per-visit precision, recall, F1 and Jaccard of the chosen
  package against the true medication set, and the DDI rate of the chosen packages.

Shapes: ``V`` training visits, ``n_drugs`` drugs, ``P`` packages, ``U`` training
patients, ``Q`` queries (test visits), ``N`` keys (training patients) and ``D`` embedding
features. Nothing here loops in Python over visits, patients or keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medtoolkit.metrics import _as_matrix, _check_same_shape, _safe_divide, pair_counts

#: the per-visit metrics of :func:`package_scores`, in report order
PACKAGE_METRICS: tuple[str, ...] = ("precision", "recall", "f1", "jaccard", "ddi_rate")


# ----------------------------------------------------------------------------- helpers
def _as_sets(values: Any, name: str) -> np.ndarray:
    """A 2-D bool matrix from bool or 0/1 values; anything else is refused."""
    matrix = _as_matrix(values, name)
    if matrix.dtype == bool:
        return matrix
    if not (np.issubdtype(matrix.dtype, np.integer) or np.issubdtype(matrix.dtype, np.floating)):
        raise ValueError(f"{name} must be bool or 0/1 numbers, got dtype {matrix.dtype}")
    if not ((matrix == 0) | (matrix == 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return matrix != 0


def _row_keys(sets: np.ndarray) -> np.ndarray:
    """One fixed-size byte string per row of a ``[n, n_drugs]`` bool matrix (``[n]`` void)."""
    packed = np.ascontiguousarray(np.packbits(sets, axis=1))
    width = packed.shape[1]
    if width == 0:  # no drug column: every row is the same (empty) set
        return np.zeros(sets.shape[0], dtype=np.dtype((np.void, 1)))
    return packed.view(np.dtype((np.void, width))).reshape(-1)


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _offsets_from_groups(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """CSR offsets ``[n_groups + 1]`` of a sorted group-id array."""
    offsets = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=n_groups), out=offsets[1:])
    return offsets


# ----------------------------------------------------------------------------- package index
@dataclass(frozen=True, eq=False)
class PackageIndex:
    """The drug packages of the training visits and the packages of each training patient.

    Build it with :meth:`from_visits` from the training split only. The arrays are
    read-only.

    A package is a distinct medication set. Packages are numbered in order of first
    occurrence among the training visits (package 0 is the set of visit 0, package 1 the
    first set that differs from it, ...), so the numbering is deterministic. The empty set
    is a package only when some training visit has no medication (it is then counted like
    any other set); filter such visits out before building the index if an empty
    recommendation must never be a candidate.

    The patients' packages are a CSR structure: the packages of ``patients[u]`` are
    ``patient_packages[patient_offsets[u]:patient_offsets[u + 1]]``, distinct and in
    ascending package order (a package prescribed at several visits of the patient is
    listed once).

    Attributes:
        packages: ``[P, n_drugs]`` bool, one distinct medication set per row.
        counts: ``[P]`` int64, number of training visits whose set is exactly that package.
        visit_package: ``[V]`` int64, the package of each training visit (row order of the
            input).
        patients: ``[U]`` the distinct training patient ids, ascending (dtype of the input).
        patient_offsets: ``[U + 1]`` int64 CSR offsets into ``patient_packages``.
        patient_packages: ``[sum]`` int64 package ids of each patient, see above.
    """

    packages: np.ndarray
    counts: np.ndarray
    visit_package: np.ndarray
    patients: np.ndarray
    patient_offsets: np.ndarray
    patient_packages: np.ndarray

    def __post_init__(self) -> None:
        n_packages = self.packages.shape[0]
        if self.packages.ndim != 2 or self.counts.shape != (n_packages,):
            raise ValueError(f"packages {self.packages.shape} and counts {self.counts.shape} do not match")
        if self.patient_offsets.shape != (self.patients.shape[0] + 1,):
            raise ValueError(f"patient_offsets has shape {self.patient_offsets.shape}, "
                             f"expected ({self.patients.shape[0] + 1},)")
        if int(self.patient_offsets[-1]) != self.patient_packages.shape[0]:
            raise ValueError("patient_offsets[-1] must equal the length of patient_packages")

    @property
    def n_packages(self) -> int:
        """``P``, the number of packages."""
        return int(self.packages.shape[0])

    @property
    def n_drugs(self) -> int:
        """The number of drug columns."""
        return int(self.packages.shape[1])

    @property
    def n_patients(self) -> int:
        """``U``, the number of training patients."""
        return int(self.patients.shape[0])

    @classmethod
    def from_visits(cls, multi_hot: np.ndarray, visit_patient: np.ndarray) -> "PackageIndex":
        """Index the medication sets of the training visits.

        Args:
            multi_hot: ``[V, n_drugs]`` bool (or 0/1) medication set of each training visit.
            visit_patient: ``[V]`` patient id of each visit (any sortable ids, typically
                integers).

        Returns:
            the index; see the class description for the order of packages and patients.

        Raises:
            ValueError: ``multi_hot`` is not a 2-D 0/1 matrix, or ``visit_patient`` does not
                have one id per visit.
        """
        sets = _as_sets(multi_hot, "multi_hot")
        owners = np.asarray(visit_patient)
        if owners.shape != (sets.shape[0],):
            raise ValueError(f"visit_patient has shape {owners.shape}, expected ({sets.shape[0]},)")

        # distinct rows as byte strings, renumbered by first occurrence
        keys = _row_keys(sets)
        _, first_visit, inverse = np.unique(keys, return_index=True, return_inverse=True)
        order = np.argsort(first_visit, kind="stable")  # sorted key -> first-occurrence rank
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order), dtype=np.int64)
        visit_package = rank[inverse.reshape(-1)]
        n_packages = len(order)
        packages = sets[first_visit[order]]
        counts = np.bincount(visit_package, minlength=n_packages).astype(np.int64)

        # distinct (patient, package) pairs, sorted by patient then package
        patients, patient_row = np.unique(owners, return_inverse=True)
        pairs = np.unique(patient_row.reshape(-1).astype(np.int64) * max(n_packages, 1) + visit_package)
        pair_patient = pairs // max(n_packages, 1)
        patient_packages = pairs - pair_patient * max(n_packages, 1)

        return cls(
            packages=_readonly(np.ascontiguousarray(packages)),
            counts=_readonly(counts),
            visit_package=_readonly(visit_package),
            patients=_readonly(patients),
            patient_offsets=_readonly(_offsets_from_groups(pair_patient, len(patients))),
            patient_packages=_readonly(patient_packages),
        )

    def package_of(self, multi_hot: np.ndarray) -> np.ndarray:
        """The package id of each medication set, -1 where the set is not a package.

        Args:
            multi_hot: ``[n, n_drugs]`` bool (or 0/1) medication sets (e.g. the true sets of
                the test visits).

        Returns:
            ``[n]`` int64 package ids, -1 for a set that no training visit prescribed.
        """
        sets = _as_sets(multi_hot, "multi_hot")
        if sets.shape[1] != self.n_drugs:
            raise ValueError(f"multi_hot has {sets.shape[1]} drug columns, the index has {self.n_drugs}")
        keys = np.concatenate([_row_keys(self.packages), _row_keys(sets)])
        _, inverse = np.unique(keys, return_inverse=True)
        inverse = inverse.reshape(-1)
        table = np.full(int(inverse.max(initial=-1)) + 1, -1, dtype=np.int64)
        table[inverse[:self.n_packages]] = np.arange(self.n_packages, dtype=np.int64)
        return table[inverse[self.n_packages:]]


# ----------------------------------------------------------------------------- nearest patients
def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero (their cosine similarity is 0)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def _top_k_block(similarity: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` columns of each row by decreasing similarity, ties by lower column."""
    n_rows, n_keys = similarity.shape
    if k == n_keys:
        candidates = np.broadcast_to(np.arange(n_keys, dtype=np.int64), (n_rows, n_keys))
    else:
        candidates = np.argpartition(similarity, n_keys - k, axis=1)[:, n_keys - k:].astype(np.int64)
        # argpartition picks arbitrary members of a tie at the k-th value; redo the rows
        # where more columns share that value than were picked: all columns above it,
        # then the lowest-index ties
        kth = np.take_along_axis(similarity, candidates, axis=1).min(axis=1, keepdims=True)
        picked_ties = (np.take_along_axis(similarity, candidates, axis=1) == kth).sum(axis=1)
        ambiguous = np.flatnonzero((similarity == kth).sum(axis=1) > picked_ties)
        if len(ambiguous):
            rows, row_kth = similarity[ambiguous], kth[ambiguous]
            tied = rows == row_kth
            missing = k - (rows > row_kth).sum(axis=1, keepdims=True)
            chosen = (rows > row_kth) | (tied & (np.cumsum(tied, axis=1, dtype=np.int64) <= missing))
            candidates[ambiguous] = np.nonzero(chosen)[1].reshape(len(ambiguous), k)
    values = np.take_along_axis(similarity, candidates, axis=1)
    order = np.lexsort((candidates, -values), axis=-1)  # by value descending, then index
    return np.take_along_axis(candidates, order, axis=1)


def nearest_keys(query: np.ndarray, keys: np.ndarray, k: int, block: int = 4096) -> np.ndarray:
    """The ``k`` keys most similar to each query by cosine similarity.

    Similarities are computed for ``block`` queries at a time (a ``[block, N]`` float64
    matrix) and the top ``k`` are selected with :func:`numpy.argpartition`; there is no Python
    loop over keys. A zero vector (query or key) has similarity 0 with everything. Ties -
    exactly equal similarities - are broken by the lower key index, so the result is
    deterministic.

    Args:
        query: ``[Q, D]`` query embeddings (e.g. the test patients).
        keys: ``[N, D]`` key embeddings (e.g. the training patients, in the order of
            :attr:`PackageIndex.patients`).
        k: neighbours per query, ``1 <= k <= N``.
        block: queries per block; bounds the memory to ``block * N`` floats.

    Returns:
        ``[Q, k]`` int64 key indices, most similar first.

    Raises:
        ValueError: ``k`` is outside ``[1, N]``, ``block`` is below 1, the shapes do not
            agree or an embedding is not finite.
    """
    queries = _as_matrix(query, "query", dtype=np.float64)
    key_matrix = _as_matrix(keys, "keys", dtype=np.float64)
    if queries.shape[1] != key_matrix.shape[1]:
        raise ValueError(f"query has {queries.shape[1]} features but keys have {key_matrix.shape[1]}")
    n_keys = key_matrix.shape[0]
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k > n_keys:
        raise ValueError(f"k = {k} nearest patients requested but there are only {n_keys} keys")
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    if not (np.isfinite(queries).all() and np.isfinite(key_matrix).all()):
        raise ValueError("query and keys must be finite")

    unit_keys_t = _unit_rows(key_matrix).T
    unit_queries = _unit_rows(queries)
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], block):
        stop = start + block
        out[start:stop] = _top_k_block(unit_queries[start:stop] @ unit_keys_t, k)
    return out


# ----------------------------------------------------------------------------- candidates
def visit_candidates(visit_package: np.ndarray, neighbour_visits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The candidate packages of each query: the distinct packages of its neighbour training visits.

    Args:
        visit_package: ``[V]`` int64 package of each training visit
            (:attr:`PackageIndex.visit_package`).
        neighbour_visits: ``[Q, k]`` neighbours of each query as training-visit rows in
            ``[0, V)`` (what :func:`nearest_keys` returns for keys in training-visit order).

    Returns:
        ``(offsets, package_ids)`` CSR: the candidates of query ``q`` are
        ``package_ids[offsets[q]:offsets[q + 1]]``, distinct and ascending.

    Raises:
        ValueError: ``neighbour_visits`` is not 2-D integers or points outside ``[0, V)``.
    """
    neighbours = np.asarray(neighbour_visits)
    packages = np.asarray(visit_package, dtype=np.int64)
    if neighbours.ndim != 2 or not (neighbours.size == 0 or np.issubdtype(neighbours.dtype, np.integer)):
        raise ValueError(f"neighbour_visits must be a 2-D integer [queries, k] array, got shape "
                         f"{neighbours.shape} and dtype {neighbours.dtype}")
    if neighbours.size and (neighbours.min() < 0 or neighbours.max() >= len(packages)):
        raise ValueError(f"neighbour_visits must be training-visit rows in [0, {len(packages)})")
    n_queries = neighbours.shape[0]
    width = int(packages.max(initial=0)) + 1
    owner = np.repeat(np.arange(n_queries, dtype=np.int64), neighbours.shape[1])
    pairs = np.unique(owner * width + packages[neighbours.reshape(-1).astype(np.int64)])
    pair_query = pairs // width
    return _offsets_from_groups(pair_query, n_queries), pairs - pair_query * width


def candidate_packages(index: PackageIndex, neighbour_patients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The candidate packages of each query: the union of its neighbours' packages.

    Args:
        index: the training package index.
        neighbour_patients: ``[Q, k]`` neighbours of each query as row positions in
            ``index.patients`` (what :func:`nearest_keys` returns when the keys are
            the training patients' embeddings in that order). A repeated neighbour is
            harmless.

    Returns:
        ``(offsets, package_ids)``: ``offsets`` ``[Q + 1]`` int64 and ``package_ids``
        ``[offsets[-1]]`` int64; the candidates of query ``q`` are
        ``package_ids[offsets[q]:offsets[q + 1]]``, distinct and ascending.

    Raises:
        ValueError: ``neighbour_patients`` is not 2-D integers or points outside
            ``[0, U)``.
    """
    neighbours = np.asarray(neighbour_patients)
    if neighbours.ndim != 2 or not (neighbours.size == 0 or np.issubdtype(neighbours.dtype, np.integer)):
        raise ValueError(f"neighbour_patients must be a 2-D integer [queries, k] array, got shape "
                         f"{neighbours.shape} and dtype {neighbours.dtype}")
    neighbours = neighbours.astype(np.int64)
    if neighbours.size and (neighbours.min() < 0 or neighbours.max() >= index.n_patients):
        raise ValueError(f"neighbour_patients must be row positions in [0, {index.n_patients})")
    n_queries, k = neighbours.shape

    flat = neighbours.reshape(-1)
    starts = index.patient_offsets[flat]
    lengths = index.patient_offsets[flat + 1] - starts
    total = int(lengths.sum())
    # positions of every neighbour's CSR slice, concatenated
    slice_start = np.cumsum(lengths) - lengths
    positions = np.arange(total, dtype=np.int64) - np.repeat(slice_start - starts, lengths)
    packages = index.patient_packages[positions]
    owner = np.repeat(np.repeat(np.arange(n_queries, dtype=np.int64), k), lengths)

    width = max(index.n_packages, 1)
    pairs = np.unique(owner * width + packages)
    pair_query = pairs // width
    return _offsets_from_groups(pair_query, n_queries), pairs - pair_query * width


# ----------------------------------------------------------------------------- metrics
def package_scores(
    chosen: np.ndarray,
    truth: np.ndarray,
    ddi_adjacency: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score the chosen package of each visit against its true medication set.

    The DPR paper reports precision, recall and F1 without writing them out; they are the
    set-based definitions of :mod:`medtoolkit.metrics`, with the undefined cases fixed.
    For a visit with chosen package ``C`` and true set ``T``:

    * precision ``|C ∩ T| / |C|``, 0 when the chosen package is empty;
    * recall ``|C ∩ T| / |T|``, 0 when the true set is empty;
    * F1 ``2 p r / (p + r)``, 0 when ``p + r = 0`` (in particular when both are 0);
    * Jaccard ``|C ∩ T| / |C ∪ T|``, 0 when both sets are empty;
    * DDI rate: unordered pairs ``i < j`` of chosen drugs with ``A[i, j]`` or ``A[j, i]``
      nonzero, over all ``|C| (|C| - 1) / 2`` pairs (0 for fewer than two drugs). Its mean
      is pooled - interacting pairs over all pairs of all visits - as
      :func:`medtoolkit.metrics.ddi_rate`.

    The means of the other metrics are plain means over the ``Q`` visits (NaN when
    ``Q = 0``).

    Args:
        chosen: ``[Q, n_drugs]`` bool (or 0/1) chosen package of each visit
            (``index.packages[ids]``).
        truth: ``[Q, n_drugs]`` bool (or 0/1) true medication set of each visit.
        ddi_adjacency: ``[n_drugs, n_drugs]`` interaction matrix (nonzero = interacting,
            read symmetrically, diagonal ignored); None when the dataset has none.

    Returns:
        ``{"precision", "recall", "f1", "jaccard", "ddi_rate"}``: ``[Q]`` float64 arrays
        (``ddi_rate`` None without a DDI matrix); ``"n_drugs"``, ``"all_pairs"`` and
        ``"ddi_pairs"``: ``[Q]`` int64 (``ddi_pairs`` None without a DDI matrix); and
        ``"means"``: ``{metric: float}`` for :data:`PACKAGE_METRICS` plus ``"avg_drugs"``
        (``ddi_rate`` pooled, None without a DDI matrix).

    Raises:
        ValueError: the matrices are not 0/1, their shapes differ or the DDI matrix does
            not match the drugs.
    """
    chosen_sets = _as_sets(chosen, "chosen")
    true_sets = _as_sets(truth, "truth")
    _check_same_shape(true_sets, chosen_sets, "chosen")

    n_chosen = chosen_sets.sum(axis=1, dtype=np.int64)
    n_true = true_sets.sum(axis=1, dtype=np.int64)
    overlap = (chosen_sets & true_sets).sum(axis=1, dtype=np.int64)
    precision = _safe_divide(overlap, n_chosen)
    recall = _safe_divide(overlap, n_true)
    scores: dict[str, Any] = {
        "precision": precision,
        "recall": recall,
        "f1": _safe_divide(2.0 * precision * recall, precision + recall),
        "jaccard": _safe_divide(overlap, n_chosen + n_true - overlap),
    }
    ddi_pairs, all_pairs = pair_counts(chosen_sets, ddi_adjacency)
    has_ddi = ddi_adjacency is not None
    scores["ddi_rate"] = _safe_divide(ddi_pairs, all_pairs) if has_ddi else None
    scores["n_drugs"] = n_chosen
    scores["all_pairs"] = all_pairs
    scores["ddi_pairs"] = ddi_pairs if has_ddi else None

    n_visits = chosen_sets.shape[0]

    def mean(values: np.ndarray) -> float:
        return float(values.sum() / n_visits) if n_visits else float("nan")

    means: dict[str, float | None] = {metric: mean(scores[metric]) for metric in PACKAGE_METRICS[:4]}
    pooled_pairs = int(all_pairs.sum())
    means["ddi_rate"] = (None if not has_ddi
                         else float(ddi_pairs.sum() / pooled_pairs) if pooled_pairs else 0.0)
    means["avg_drugs"] = mean(n_chosen)
    scores["means"] = means
    return scores
