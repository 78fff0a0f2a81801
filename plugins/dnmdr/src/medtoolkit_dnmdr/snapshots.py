"""DNMDR's weighted snapshot graphs (Eq. 2-4), built for every visit of a batch at once.

The snapshot of visit t has one node per code: the visit's diagnoses ``d_t``, procedures ``p_t``
and the *previous* visit's medications ``m_{t-1}``, packed real nodes first
(:func:`pack_nodes`) into ``N`` slots, ``N`` the largest snapshot of the group; padding slots
hold code 0 and get no edges.

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


#: node type ids of :func:`pack_nodes`
DIAGNOSIS_NODE, PROCEDURE_NODE, MEDICATION_NODE = 0, 1, 2


def pack_nodes(
    diagnoses: torch.Tensor, procedures: torch.Tensor, medications: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The snapshot nodes of V visits, real nodes first, padded to the largest snapshot.

    Padding each type to its own longest list would give ``N = max L_d + max L_p + max L_m``
    node slots; packing gives ``N = max (L_d + L_p + L_m)`` (on MIMIC-III batches the
    ``[V, N, N]`` attention shrinks about 2.5 times).

    Args:
        diagnoses: ``[V, L_d]`` codes (index + 1, 0 = padding, real codes first).
        procedures: ``[V, L_p]``.
        medications: ``[V, L_m]`` the *previous* visit's medication codes.

    Returns:
        ``(codes [V, N], types [V, N])``: each visit's diagnoses, procedures and medications in
        that order, then padding (code 0); ``types`` holds :data:`DIAGNOSIS_NODE`,
        :data:`PROCEDURE_NODE` or :data:`MEDICATION_NODE` (any value at padding).
    """
    codes = torch.cat([diagnoses, procedures, medications], dim=1)
    types = torch.cat([torch.full_like(diagnoses, DIAGNOSIS_NODE), torch.full_like(procedures, PROCEDURE_NODE),
                       torch.full_like(medications, MEDICATION_NODE)], dim=1)
    order = torch.argsort((codes == 0).to(torch.int8), dim=1, stable=True)  # real nodes first, order kept
    width = max(int((codes > 0).sum(dim=1).max()) if codes.numel() else 0, 1)
    order = order[:, :width]
    return codes.gather(1, order), types.gather(1, order)


def snapshot_weights(
    codes: torch.Tensor,
    types: torch.Tensor,
    tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """Weighted adjacency of every snapshot (Eq. 2-4), batched.

    Args:
        codes: ``[V, N]`` node codes (index + 1 in the node's vocabulary, 0 = padding), e.g.
            from :func:`pack_nodes`.
        types: ``[V, N]`` node types (:data:`DIAGNOSIS_NODE`, :data:`PROCEDURE_NODE`,
            :data:`MEDICATION_NODE`).
        tables: ``(P(m|d) [D+1, M+1], P(m|p) [P+1, M+1], P(m_j|m_i) [M+1, M+1])`` from
            :func:`conditional_table`, or None for the fully connected ablation.

    Returns:
        ``[V, N, N]`` non-negative weights (rows: receiving node).
    """
    real = codes > 0
    pair_real = real.unsqueeze(2) & real.unsqueeze(1)
    if tables is None:
        return pair_real.to(torch.float32)
    given_diagnosis, given_procedure, given_medication = tables

    def of_type(node_type: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The codes of one node type (0 elsewhere) as row and column indices."""
        only = torch.where(types == node_type, codes, 0)
        return only.unsqueeze(2), only.unsqueeze(1)

    diagnosis_row, diagnosis_col = of_type(DIAGNOSIS_NODE)
    procedure_row, procedure_col = of_type(PROCEDURE_NODE)
    medication_row, medication_col = of_type(MEDICATION_NODE)
    # code 0 indexes a zero row or column, so every pair lands in at most one of these terms
    weights = (given_diagnosis[diagnosis_row, medication_col] + given_diagnosis[diagnosis_col, medication_row]
               + given_procedure[procedure_row, medication_col] + given_procedure[procedure_col, medication_row]
               + given_medication[medication_row, medication_col])
    eye = torch.eye(codes.shape[1], dtype=torch.bool, device=codes.device).unsqueeze(0)
    weights = torch.where(eye, 1.0, weights)  # self loops (Eq. 2's +inf)
    return weights * pair_real
