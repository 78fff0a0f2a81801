"""Package generation: new candidate sets made from the neighbours' packages (DPR section 6).

Given a visit's candidate set ``S1`` (the packages of its nearest training visits), the
model's per-drug ranking ``l`` of the visit (descending probability, ties by lower drug index;
``l[d]`` is drug ``d``'s position, 0 the best), the training drug frequency ranking ``L``
(descending training count), the training co-occurrence proportion ``p[v, u]`` and the drug
relations ``R``:

* ``S2``: each package of ``S1`` with

  (a) drugs removed that appear in at most ``rare_share`` of ``S1``'s packages **and** rank
      at position ``low_rank`` or worse in ``l`` (default ``low_rank``: twice the mean
      training medication-set size, rounded), and
  (b) drugs added that rank in ``l``'s top ``top_n`` **and** at least ``popularity_gap``
      places lower in ``L`` than in ``l`` (``L[d] - l[d] >= popularity_gap``: drugs the
      model ranks far above their popularity);

* ``S3``: each package of ``S2`` with the drugs of ``l``'s top ``top_n`` added that have
  SYNERGY with a drug ``v`` of the package (in either direction) or co-occur with one
  (``max(p[v, d], p[d, v]) >= high_cooccurrence``); then, for every ANTAGONISM pair inside
  (either direction) with ``max(p[a, b], p[b, a]) < low_cooccurrence``, the drug ranked lower
  in ``l`` is removed (all pairs are judged on the set before any removal);

* ``S = S1 ∪ S2 ∪ S3``, distinct per visit, empty sets dropped.

Everything is vectorised over all candidate rows of a block (the antagonism step over
chunks of rows, to bound memory by ``chunk x pairs``).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from medtoolkit.components.params import Params
from medtoolkit.tasks.package_choice import Candidates
from medtoolkit.tasks.packages import _row_keys

__all__ = ["GenerationParams", "descending_rank", "generate_candidates"]

_SYNERGY, _ANTAGONISM = 1, 2
_CHUNK_ROWS = 4096


class GenerationParams(Params):
    """Settings of package generation (``task.generation``); defaults follow the paper's description.

    Attributes:
        rare_share: a drug in at most this share of the visit's candidate packages is rare.
        low_rank: a rare drug at this position of ``l`` or worse is removed (None: twice the
            mean training medication-set size, rounded).
        top_n: how many of ``l``'s best drugs may be added.
        popularity_gap: a top drug is added in ``S2`` when it ranks at least this many places
            lower in ``L`` than in ``l``.
        high_cooccurrence: a top drug co-occurring at least this much with a package drug is
            added in ``S3``.
        low_cooccurrence: antagonistic pairs co-occurring less than this lose their lower-ranked drug.
    """

    rare_share: float = Field(0.2, ge=0.0, le=1.0, description="share of candidate packages below which a drug is rare")
    low_rank: int | None = Field(None, ge=0, description="rank in l from which a rare drug is removed (None: 2 x mean set size)")
    top_n: int = Field(5, ge=0, description="best drugs of l that may be added")
    popularity_gap: int = Field(10, ge=0, description="places a drug must rank lower in L than in l to be added in S2")
    high_cooccurrence: float = Field(0.5, ge=0.0, le=1.0, description="co-occurrence adding a top drug in S3")
    low_cooccurrence: float = Field(0.01, ge=0.0, le=1.0, description="co-occurrence below which an antagonistic pair is split")


def descending_rank(values: np.ndarray) -> np.ndarray:
    """Position of every entry in its row's descending order (0 = largest; ties: lower index first).

    Args:
        values: ``[..., n]``.

    Returns:
        ``[..., n]`` int64 ranks.
    """
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-values, axis=-1, kind="stable")
    rank = np.empty(values.shape, dtype=np.int64)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(values.shape[-1]), values.shape), axis=-1)
    return rank


def _split_antagonists(sets: np.ndarray, rank: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``sets`` without the lower-ranked drug of every listed pair both drugs of which are in the row."""
    out = sets.copy()
    if not len(first):
        return out
    for start in range(0, len(sets), _CHUNK_ROWS):  # chunks of rows bound the [rows, pairs] arrays
        rows = slice(start, start + _CHUNK_ROWS)
        present = sets[rows][:, first] & sets[rows][:, second]
        loser = np.where(rank[rows][:, first] > rank[rows][:, second], first, second)
        hit_row, hit_pair = np.nonzero(present)
        out[rows][hit_row, loser[hit_row, hit_pair]] = False
    return out


def generate_candidates(
    s1: Candidates,
    probabilities: np.ndarray,
    frequency_rank: np.ndarray,
    cooccurrence: np.ndarray,
    relation: np.ndarray | None,
    params: GenerationParams,
    mean_set_size: float,
) -> Candidates:
    """``S1 ∪ S2 ∪ S3`` of every visit (see the module docstring).

    Args:
        s1: the visits' candidate packages (training packages; every visit has one).
        probabilities: ``[Q, n]`` the model's per-drug probabilities (the ranking ``l``).
        frequency_rank: ``[n]`` int64 position of each drug in the training frequency
            ranking ``L`` (0 the most prescribed).
        cooccurrence: ``[n, n]`` co-occurrence proportion ``p[v, u]``.
        relation: ``[n, n]`` relation values (0 NONE, 1 SYNERGY, 2 ANTAGONISM, 3 UNKNOWN) or None.
        params: the generation settings.
        mean_set_size: mean size of the training medication sets (for the default ``low_rank``).

    Returns:
        the candidates: per visit ``S1``'s rows first (ascending package id), then the new
        sets (``package`` -1, "generated", even when a new set equals a training package
        outside the visit's ``S1``) in a fixed order (by their bytes).
    """
    sets1 = s1.sets
    owner = s1.owner
    n_drugs = sets1.shape[1]
    rank = descending_rank(probabilities)  # l, [Q, n]
    row_rank = rank[owner]
    low_rank = params.low_rank if params.low_rank is not None else int(round(2 * mean_set_size))

    # S2: (a) rare and low-ranked drugs out, (b) top drugs ranked far above their popularity in
    n_candidates = np.diff(s1.offsets)
    share = np.add.reduceat(sets1.astype(np.int64), s1.offsets[:-1], axis=0) / n_candidates[:, None]
    remove = (share <= params.rare_share) & (rank >= low_rank)
    top = rank < params.top_n
    add = top & (np.asarray(frequency_rank, dtype=np.int64)[None, :] - rank >= params.popularity_gap)
    sets2 = (sets1 & ~remove[owner]) | add[owner]

    # S3: top drugs linked to the package in, then antagonistic rare pairs split
    p = np.asarray(cooccurrence, dtype=np.float64)
    p_either = np.maximum(p, p.T)
    kinds = np.zeros((n_drugs, n_drugs), dtype=np.int64) if relation is None else np.asarray(relation, np.int64)
    synergy = (kinds == _SYNERGY) | (kinds.T == _SYNERGY)
    link = (synergy | (p_either >= params.high_cooccurrence)) & ~np.eye(n_drugs, dtype=bool)
    linked = (sets2.astype(np.float32) @ link.astype(np.float32)) > 0
    sets3 = sets2 | (top[owner] & linked)
    antagonism = ((kinds == _ANTAGONISM) | (kinds.T == _ANTAGONISM)) & (p_either < params.low_cooccurrence)
    first, second = np.nonzero(np.triu(antagonism, k=1))
    sets3 = _split_antagonists(sets3, row_rank, first, second)

    return _union(s1, np.concatenate([sets2, sets3]), np.concatenate([owner, owner]))


def _union(s1: Candidates, new_sets: np.ndarray, new_owner: np.ndarray) -> Candidates:
    """``S1`` plus the distinct non-empty new sets of each visit that are not in its ``S1``."""
    n_s1 = len(s1.package)
    keep = new_sets.any(axis=1)
    sets = np.concatenate([s1.sets, new_sets[keep]])
    owner = np.concatenate([s1.owner, new_owner[keep]])
    package = np.concatenate([s1.package, np.full(int(keep.sum()), -1, dtype=np.int64)])
    _, set_id = np.unique(_row_keys(sets), return_inverse=True)
    set_id = set_id.reshape(-1).astype(np.int64)
    _, rows = np.unique(owner * (int(set_id.max(initial=0)) + 1) + set_id, return_index=True)  # S1 rows come first
    generated = rows >= n_s1
    rows = rows[np.lexsort((np.where(generated, set_id[rows], package[rows]), generated, owner[rows]))]
    offsets = np.zeros(s1.n_visits + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[rows], minlength=s1.n_visits), out=offsets[1:])
    return Candidates(offsets, sets[rows], package[rows])
