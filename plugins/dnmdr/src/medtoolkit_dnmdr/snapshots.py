"""DNMDR's weighted snapshot graphs (Eq. 2-4), built for every visit of a batch at once.

The snapshot of visit t has one node per code: the visit's diagnoses ``d_t`` (``L_d`` slots),
procedures ``p_t`` (``L_p``) and the *previous* visit's medications ``m_{t-1}`` (``L_m``), so
``N = L_d + L_p + L_m`` node slots (padding slots hold code 0 and get no edges).

Mask (Eq. 2) and weights (Eq. 3), as implemented:

* self loop of every real node: weight 1 (Eq. 2's ``+inf``: always kept);
* diagnosis-diagnosis, diagnosis-procedure, procedure-procedure: no edge (Eq. 2's ``-inf``);
* diagnosis-medication and procedure-medication: ``P(m | c) = n_cm / n_c`` (both directions of
  the edge carry the same weight);
* medication-medication (``i != j``): ``P(m_j | m_i) = n_ij / n_i``;
* counts ``n`` are training-split visit counts (``pair_counts`` / ``code_counts`` statistics);
  a code never seen in training has weight 0 to every neighbour.

Eq. 4's normalisation is a row normalisation; the attention renormalises every row anyway
(:func:`~medtoolkit_dnmdr.attention.weighted_attention`), so it is implied rather than applied.
``conditional_probability=False`` (ablation ``DNMDR_prob``) connects every pair of real nodes
with weight 1: the all-ones matrix of the paper's ablation.
"""

from __future__ import annotations

import numpy as np
import torch

from medtoolkit.components.statistics import code_counts, pair_counts

DIAGNOSES = "diagnoses"
PROCEDURES = "procedures"
MEDICATIONS = "medications"

#: the training-split statistics the conditional probabilities are computed from
SNAPSHOT_STATISTICS = frozenset({
    pair_counts(DIAGNOSES, MEDICATIONS), pair_counts(PROCEDURES, MEDICATIONS),
    pair_counts(MEDICATIONS, MEDICATIONS), code_counts(DIAGNOSES), code_counts(PROCEDURES),
})


def conditional_table(pairs: np.ndarray, given: np.ndarray) -> torch.Tensor:
    """``P(col | row) = pairs[row, col] / given[row]`` with a zero padding row and column 0.

    Args:
        pairs: ``[R, C]`` co-occurrence counts.
        given: ``[R]`` counts of the conditioning codes (rows with 0 get probability 0).

    Returns:
        ``[R + 1, C + 1]`` float32, indexed by code index + 1 (the batches' convention).
    """
    pairs = np.asarray(pairs, dtype=np.float64)
    given = np.asarray(given, dtype=np.float64)
    if pairs.ndim != 2 or given.shape != (pairs.shape[0],):
        raise ValueError(f"counts of shape {pairs.shape} and {given.shape} do not match")
    probability = np.divide(pairs, given[:, None], out=np.zeros_like(pairs), where=given[:, None] > 0)
    table = np.zeros((pairs.shape[0] + 1, pairs.shape[1] + 1), dtype=np.float32)
    table[1:, 1:] = np.clip(probability, 0.0, 1.0)
    return torch.from_numpy(table)


def snapshot_weights(
    diagnoses: torch.Tensor,
    procedures: torch.Tensor,
    medications: torch.Tensor,
    tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """Weighted adjacency of every snapshot (Eq. 2-4), batched.

    Args:
        diagnoses: ``[V, L_d]`` codes (index + 1, 0 = padding) of V visits.
        procedures: ``[V, L_p]``.
        medications: ``[V, L_m]`` the *previous* visit's medication codes.
        tables: ``(P(m|d) [D+1, M+1], P(m|p) [P+1, M+1], P(m_j|m_i) [M+1, M+1])`` from
            :func:`conditional_table`, or None for the fully connected ablation.

    Returns:
        ``[V, N, N]`` non-negative weights, ``N = L_d + L_p + L_m`` (rows: receiving node).
    """
    real = torch.cat([diagnoses > 0, procedures > 0, medications > 0], dim=1)  # [V, N]
    pair_real = real.unsqueeze(2) & real.unsqueeze(1)
    if tables is None:
        return pair_real.to(torch.float32)
    given_diagnosis, given_procedure, given_medication = tables
    n_d, n_p, n_m = diagnoses.shape[1], procedures.shape[1], medications.shape[1]
    n_nodes = n_d + n_p + n_m
    dm = given_diagnosis[diagnoses.unsqueeze(2), medications.unsqueeze(1)]  # [V, L_d, L_m]
    pm = given_procedure[procedures.unsqueeze(2), medications.unsqueeze(1)]  # [V, L_p, L_m]
    mm = given_medication[medications.unsqueeze(2), medications.unsqueeze(1)]  # [V, L_m, L_m]
    weights = dm.new_zeros((diagnoses.shape[0], n_nodes, n_nodes))
    weights[:, :n_d, n_d + n_p:] = dm
    weights[:, n_d + n_p:, :n_d] = dm.transpose(1, 2)
    weights[:, n_d:n_d + n_p, n_d + n_p:] = pm
    weights[:, n_d + n_p:, n_d:n_d + n_p] = pm.transpose(1, 2)
    weights[:, n_d + n_p:, n_d + n_p:] = mm
    eye = torch.eye(n_nodes, dtype=torch.bool, device=weights.device).unsqueeze(0)
    weights = torch.where(eye, 1.0, weights)  # self loops (Eq. 2's +inf)
    return weights * pair_real
