"""``mpnn``: SafeDrug's message-passing molecule encoder, as a trained drug encoder.

Shapes (A atoms, E directed edges, M molecules, N drugs, D = ``dim``, F fingerprint ids):

* fingerprints ``f [A]`` (:func:`~medtoolkit_molecule.fingerprints.wl_fingerprints`);
* ``h^0 = E_fp[f]`` ``[A, D]``;
* layer ``l``: ``z = ReLU(W_l h^{l-1} + b_l)``, ``h^l = z + A z`` (A: adjacency without self
  loops, a sum over neighbours);
* ``m_k = sum_{v in k} h^L_v`` (``atom_pooling: mean`` divides by the atom count) ``[M, D]``;
* ``E_mol[i] = mean_{k in molecules(i)} m_k`` ``[N, D]``.

Reference: SafeDrug ``MolecularGraphNeuralNetwork`` and ``buildMPNN`` (reference notes 4.2).
The public code runs it once in the model's constructor, so its weights are never trained
nor saved; here it is a registered module run in every forward (``trainable: false``
reproduces the frozen behaviour as an ablation).

Speed: the molecules are one torch_geometric batch built at construction; its arrays are
non-persistent buffers (the batch object itself is not kept). Two exact shortcuts:
layer 1 maps the ``F`` fingerprint rows rather than the ``A`` atoms
(``ReLU(W_1 E_fp + b_1)[f]``), and the last layer's neighbour sum is folded into the
pooling (``sum_v (z_v + sum_{u~v} z_u) = sum_v (1 + deg_v) z_v`` because edges are
symmetric and stay inside a molecule).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.utils import degree, scatter

from medtoolkit.components.base import DrugEncoder
from medtoolkit.components.params import Params
from medtoolkit_molecule.fingerprints import wl_fingerprints

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema


class MPNNEncoder(DrugEncoder):
    """Drug representations from their molecules: ``forward() -> [n_drugs, dim]``.

    Drugs without any parsed molecule get a learned fallback row (``fallback``, one row per
    such drug, N(0, 0.1) initialisation), listed in :attr:`fallback_drugs` and announced with a
    ``UserWarning``: never a silent zero row.

    Example::

        encoder = MPNNEncoder(MPNNEncoder.Params(dim=32), schema)
        drugs = encoder()  # [schema.n_drugs, 32]
    """

    class Params(Params):
        dim: int = Field(64, ge=1, description="width of fingerprint embeddings and of every layer")
        layers: int = Field(2, ge=1, description="message-passing layers")
        radius: int = Field(2, ge=0, description="Weisfeiler-Lehman rounds of the atom fingerprints")
        explicit_hydrogens: bool = Field(True, description="add explicit hydrogens before fingerprinting")
        atom_pooling: Literal["sum", "mean"] = Field("sum", description="pooling of a molecule's atoms")
        trainable: bool = Field(True, description="false: frozen at initialisation (the public code's behaviour)")

    params: Params

    @classmethod
    def knowledge_needed(cls, params: Params) -> frozenset[str]:  # type: ignore[override]
        """Molecule graphs, built from the data's SMILES with rdkit."""
        return frozenset({"molecules"})

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        if schema is None:
            raise ValueError("MPNNEncoder needs a DataSchema (the drugs' molecules)")
        p = self.params
        graphs = schema.require_molecules("encoder 'mpnn'", explicit_hydrogens=p.explicit_hydrogens)
        self.n_drugs = int(schema.n_drugs)
        if int(graphs.n_drugs) != self.n_drugs:
            raise ValueError(f"molecules are given for {graphs.n_drugs} drugs, the schema has {self.n_drugs}")
        fingerprints, n_fingerprints = wl_fingerprints(graphs, p.radius)
        self.n_fingerprints = n_fingerprints
        atom_molecule = np.asarray(graphs.atom_molecule, dtype=np.int64)
        molecule_drug = np.asarray(graphs.molecule_drug, dtype=np.int64)
        batch = _molecule_batch(fingerprints, np.asarray(graphs.edge_index, dtype=np.int64), atom_molecule,
                                len(molecule_drug))
        # the batch's arrays as buffers (rebuilt from the schema, so not saved); never the Batch itself
        self.register_buffer("x", batch.x, persistent=False)  # [A] fingerprint ids
        self.register_buffer("edge_index", batch.edge_index, persistent=False)  # [2, E]
        self.register_buffer("batch", batch.batch, persistent=False)  # [A] molecule of each atom
        self.register_buffer("atom_weight", 1.0 + degree(batch.edge_index[1], len(fingerprints)), persistent=False)
        self.register_buffer("molecule_drug", torch.as_tensor(molecule_drug), persistent=False)  # [M]
        self.n_molecules = len(molecule_drug)
        covered = np.zeros(self.n_drugs, dtype=bool)
        covered[molecule_drug] = True
        self.fallback_drugs: tuple[int, ...] = tuple(int(i) for i in np.flatnonzero(~covered))
        self.register_buffer("fallback_index", torch.tensor(self.fallback_drugs, dtype=torch.long), persistent=False)

        self.embedding = nn.Embedding(max(n_fingerprints, 1), p.dim)
        self.layers = nn.ModuleList(nn.Linear(p.dim, p.dim) for _ in range(p.layers))
        if self.fallback_drugs:
            self.fallback = nn.Parameter(0.1 * torch.randn(len(self.fallback_drugs), p.dim))
            codes = [schema.drug_codes[i] if i < len(schema.drug_codes) else str(i) for i in self.fallback_drugs]
            warnings.warn(
                f"mpnn: {len(self.fallback_drugs)} of {self.n_drugs} drugs have no parsed molecule "
                f"({', '.join(codes[:10])}{', ...' if len(codes) > 10 else ''}); they get a learned fallback row",
                UserWarning,
                stacklevel=2,
            )
        else:
            self.fallback = None
        if not p.trainable:
            self.requires_grad_(False)

    @property
    def output_dim(self) -> int:
        return self.params.dim

    def forward(self) -> torch.Tensor:  # type: ignore[override]
        """``[n_drugs, dim]`` drug representations (row i: drug index i)."""
        if self.params.trainable:
            return self.drug_embeddings()
        with torch.no_grad():
            return self.drug_embeddings()

    def molecule_embeddings(self, fold_last_layer: bool = True) -> torch.Tensor:
        """``[M, dim]`` pooled molecule representations ``m_k``.

        Args:
            fold_last_layer: fold the last layer's neighbour sum into the pooling (exact);
                False runs every layer's message passing explicitly (the reference path).
        """
        z = torch.relu(self.layers[0](self.embedding.weight))[self.x]  # [A, D]: layer 1 on the F rows
        for index in range(1, len(self.layers) + 1):
            last = index == len(self.layers)
            if last and fold_last_layer:
                break
            h = z + scatter(z[self.edge_index[0]], self.edge_index[1], dim=0, dim_size=z.shape[0], reduce="sum")
            if last:
                return self._pool(h)
            z = torch.relu(self.layers[index](h))
        return self._pool(z * self.atom_weight[:, None])

    def _pool(self, atoms: torch.Tensor) -> torch.Tensor:
        reduce = "sum" if self.params.atom_pooling == "sum" else "mean"
        return scatter(atoms, self.batch, dim=0, dim_size=self.n_molecules, reduce=reduce)

    def drug_embeddings(self, fold_last_layer: bool = True) -> torch.Tensor:
        """``[n_drugs, dim]``: the mean of each drug's molecules; fallback rows where it has none."""
        molecules = self.molecule_embeddings(fold_last_layer)
        drugs = scatter(molecules, self.molecule_drug, dim=0, dim_size=self.n_drugs, reduce="mean")
        if self.fallback is not None:
            drugs = drugs.index_copy(0, self.fallback_index, self.fallback)
        return drugs


def _molecule_batch(fingerprints: np.ndarray, edge_index: np.ndarray, atom_molecule: np.ndarray,
                    n_molecules: int) -> Batch:
    """One torch_geometric ``Batch`` of all molecules (atoms ``x`` = fingerprint ids).

    Args:
        fingerprints: ``[A]`` fingerprint id of every atom.
        edge_index: ``[2, E]`` global atom indices, both directions of every bond.
        atom_molecule: ``[A]`` non-decreasing molecule index of every atom.
        n_molecules: ``M`` (molecules without atoms keep an empty graph).

    Raises:
        ValueError: an edge joins atoms of two molecules, or atoms are not grouped by molecule.
    """
    if len(atom_molecule) and np.any(np.diff(atom_molecule) < 0):
        raise ValueError("atoms must be grouped by molecule (atom_molecule non-decreasing)")
    edge_index = edge_index.reshape(2, -1)
    if edge_index.size and np.any(atom_molecule[edge_index[0]] != atom_molecule[edge_index[1]]):
        raise ValueError("an edge joins atoms of two different molecules")
    starts = np.searchsorted(atom_molecule, np.arange(n_molecules + 1))
    edge_molecule = atom_molecule[edge_index[0]] if edge_index.size else np.zeros(0, dtype=np.int64)
    graphs = []
    for k in range(n_molecules):
        edges = edge_index[:, edge_molecule == k] - starts[k]
        graphs.append(Data(
            x=torch.as_tensor(fingerprints[starts[k]:starts[k + 1]], dtype=torch.long),
            edge_index=torch.as_tensor(edges, dtype=torch.long).reshape(2, -1),
            num_nodes=int(starts[k + 1] - starts[k]),
        ))
    return Batch.from_data_list(graphs)
