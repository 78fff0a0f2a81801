"""Tests of the WL fingerprints and the ``mpnn`` drug encoder (tiny molecules, values worked out by hand)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from medtoolkit.components.schema import DataSchema
from medtoolkit.knowledge.molecules import MoleculeGraphs, molecule_graphs
from medtoolkit.testing import check_component, fake_schema
from medtoolkit.testing.fake import FAKE_DRUG_UNPARSABLE, FAKE_DRUG_WITHOUT_SMILES
from medtoolkit_molecule.encoder import MPNNEncoder
from medtoolkit_molecule.fingerprints import rank_keys, wl_fingerprints, wl_refine

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DRUG_CHECKS = {"params", "shapes", "state_dict", "device", "determinism", "gradients"}


def hand_graphs(molecules: list[tuple[list[tuple[int, int]], list[tuple[int, int, int]]]],
                molecule_drug: list[int], n_drugs: int) -> MoleculeGraphs:
    """Molecule graphs built by hand (no rdkit).

    Args:
        molecules: per molecule, its atoms ``(atomic_num, aromatic)`` and bonds
            ``(begin, end, bond_type)`` in local atom indices.
        molecule_drug: drug of each molecule (non-decreasing).
        n_drugs: number of drugs.
    """
    atoms, edges, bond_types, atom_molecule = [], [], [], []
    offset = 0
    for k, (molecule_atoms, bonds) in enumerate(molecules):
        atoms += [[number, aromatic, 0, 5, 0, 0, 0] for number, aromatic in molecule_atoms]
        atom_molecule += [k] * len(molecule_atoms)
        for begin, end, kind in bonds:
            edges += [(offset + begin, offset + end), (offset + end, offset + begin)]
            bond_types += [kind, kind]
        offset += len(molecule_atoms)
    covered = set(molecule_drug)
    return MoleculeGraphs(
        atom_features=np.array(atoms, dtype=np.int64).reshape(-1, 7),
        edge_index=np.array(edges, dtype=np.int64).reshape(-1, 2).T,
        edge_features=np.array([[kind, 0, 0] for kind in bond_types], dtype=np.int64).reshape(-1, 3),
        atom_molecule=np.array(atom_molecule, dtype=np.int64),
        molecule_drug=np.array(molecule_drug, dtype=np.int64),
        molecule_smiles=tuple(f"m{k}" for k in range(len(molecules))),
        n_drugs=n_drugs,
        drugs_without_molecules=tuple(i for i in range(n_drugs) if i not in covered),
        explicit_hydrogens=False,
    )


CARBON, OXYGEN, SODIUM, CHLORINE = (6, 0), (8, 0), (11, 0), (17, 0)
ETHANOL = ([CARBON, CARBON, OXYGEN], [(0, 1, 0), (1, 2, 0)])  # C-C-O, single bonds


# --- fingerprints -------------------------------------------------------------------------------


def test_rank_keys_ranks_sorted_distinct_keys() -> None:
    ranks, count = rank_keys([(2, 1), (0,), (2, 1)])
    assert ranks.tolist() == [1, 0, 1] and count == 2


def test_ethanol_radius_1_by_hand() -> None:
    """Initial labels C -> 0, O -> 1. Keys: C0 (0, ((0, 0),)), C1 (0, ((0, 0), (1, 0))),
    O (1, ((0, 0),)); sorted, they are 0, 1, 2."""
    ids, count = wl_fingerprints(hand_graphs([ETHANOL], [0], 1), radius=1)
    assert ids.tolist() == [0, 1, 2] and count == 3


def test_ethanol_radius_2_by_hand() -> None:
    """After round 1 the atoms are 0, 1, 2 and the bonds (0,1,single) -> 0, (1,2,single) -> 1.
    Round 2 keys: (0, ((1, 0),)), (1, ((0, 0), (2, 1))), (2, ((1, 1),)): ranks 0, 1, 2."""
    assert wl_refine([CARBON, CARBON, OXYGEN], np.array([[0, 1, 1, 2], [1, 0, 2, 1]]), [0, 0, 0, 0], 2)[0].tolist() \
        == [0, 1, 2]
    ids, count = wl_fingerprints(hand_graphs([ETHANOL], [0], 1), radius=2)
    assert ids.tolist() == [0, 1, 2] and count == 3


def test_radius_0_is_the_atom_type_and_bond_type_matters() -> None:
    graphs = hand_graphs([ETHANOL, ([CARBON, CARBON, OXYGEN], [(0, 1, 1), (1, 2, 0)])], [0, 0], 1)
    ids, count = wl_fingerprints(graphs, radius=0)
    assert ids.tolist() == [0, 0, 1, 0, 0, 1] and count == 2
    ids, count = wl_fingerprints(graphs, radius=1)
    # C-C-O vs C=C-O (single 0, double 1). Keys: C-C-O: (0, ((0, 0),)), (0, ((0, 0), (1, 0))), (1, ((0, 0),));
    # C=C-O: (0, ((0, 1),)), (0, ((0, 1), (1, 0))), (1, ((0, 0),)). Sorted: 0 1 | 2 3 | both O 4
    assert ids.tolist() == [0, 1, 4, 2, 3, 4] and count == 5


def test_salt_without_bonds_gets_fingerprints() -> None:
    """[Na+].[Cl-]: two atoms without neighbours, keys (0, ()) and (1, ()) in every round; no crash."""
    ids, count = wl_fingerprints(hand_graphs([([SODIUM, CHLORINE], [])], [0], 1), radius=2)
    assert ids.tolist() == [0, 1] and count == 2
    graphs = molecule_graphs([["[Na+].[Cl-]"]])
    ids, count = wl_fingerprints(graphs, radius=2)
    assert ids.tolist() == [0, 1] and count == 2


def test_rdkit_ethanol_and_duplicates_share_ids() -> None:
    graphs = molecule_graphs([["CCO"], ["CCO", "[Ca++].[O-]C([O-])=O"]])
    ids, count = wl_fingerprints(graphs, radius=1)
    assert ids[:3].tolist() == ids[3:6].tolist()  # the same molecule twice
    assert len(set(ids[:3].tolist())) == 3
    assert len(ids) == graphs.n_atoms == 3 + 3 + 5  # Ca gets an id too
    with_h = molecule_graphs([["CCO"]], explicit_hydrogens=True)
    assert wl_fingerprints(with_h, radius=2)[0].shape == (9,)


# --- the encoder --------------------------------------------------------------------------------


def hand_schema() -> DataSchema:
    """Drug 0: C-C-O. Drug 1: C-C-O and a lone C. Drug 2: no molecule."""
    graphs = hand_graphs([ETHANOL, ETHANOL, ([CARBON], [])], [0, 1, 1], 3)
    return DataSchema(vocab_sizes={"diagnoses": 4, "procedures": 3}, n_drugs=3, ddi_adjacency=None,
                      drug_codes=("A", "B", "C"), molecules=graphs)


def test_chain_with_hand_set_weights() -> None:
    """dim 2, 2 layers, W = I, b = 0 (radius 1: the ethanol atoms get ids 1, 2, 3, the lone C id 0).

    E_fp rows of C0, C1, O: [1, 0], [0, 2], [3, -1]; lone C: [2, 2].
    z1 = ReLU(E) = [1, 0], [0, 2], [3, 0]; h1 = z1 + A z1 = [1, 2], [4, 2], [3, 2];
    z2 = h1; h2 = [5, 4], [8, 6], [7, 4]; sum pooling: [20, 14]. The lone C stays [2, 2].
    Drug 0 = [20, 14]; drug 1 = mean([20, 14], [2, 2]) = [11, 8]; drug 2 = its fallback row.
    Mean pooling divides the chain by 3: [20/3, 14/3].
    """
    schema = hand_schema()
    with pytest.warns(UserWarning, match=r"1 of 3 drugs have no parsed molecule \(C\)"):
        encoder = MPNNEncoder(MPNNEncoder.Params(dim=2, radius=1, explicit_hydrogens=False), schema)
    assert encoder.x.tolist() == [1, 2, 3, 1, 2, 3, 0] and encoder.fallback_drugs == (2,)
    with torch.no_grad():
        for layer in encoder.layers:
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
        encoder.embedding.weight.copy_(torch.tensor([[2.0, 2.0], [1.0, 0.0], [0.0, 2.0], [3.0, -1.0]]))
        encoder.fallback.copy_(torch.tensor([[0.5, -0.5]]))
    expected = torch.tensor([[20.0, 14.0], [11.0, 8.0], [0.5, -0.5]])
    torch.testing.assert_close(encoder(), expected)
    torch.testing.assert_close(encoder.drug_embeddings(fold_last_layer=False), expected)
    torch.testing.assert_close(encoder.molecule_embeddings(), torch.tensor([[20.0, 14.0], [20.0, 14.0], [2.0, 2.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mean = MPNNEncoder(MPNNEncoder.Params(dim=2, radius=1, explicit_hydrogens=False, atom_pooling="mean"), schema)
    mean.load_state_dict(encoder.state_dict())
    torch.testing.assert_close(mean()[0], torch.tensor([20.0 / 3, 14.0 / 3]))


@pytest.mark.parametrize("params", [MPNNEncoder.Params(), MPNNEncoder.Params(layers=3, atom_pooling="mean"),
                                    MPNNEncoder.Params(layers=1, radius=0)])
def test_fold_equals_explicit_message_passing(params: MPNNEncoder.Params) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = MPNNEncoder(params, fake_schema()).double()  # float64: compare the maths, not rounding
    naive, folded = encoder.drug_embeddings(fold_last_layer=False), encoder.drug_embeddings()
    torch.testing.assert_close(folded, naive)
    (grad_naive,) = torch.autograd.grad(naive.square().sum(), encoder.layers[-1].weight)
    (grad_folded,) = torch.autograd.grad(folded.square().sum(), encoder.layers[-1].weight)
    torch.testing.assert_close(grad_folded, grad_naive)


@pytest.mark.filterwarnings("ignore:mpnn")
@pytest.mark.parametrize(
    "params",
    [
        MPNNEncoder.Params(dim=8),
        MPNNEncoder.Params(dim=8, layers=1, radius=1, explicit_hydrogens=False, atom_pooling="mean"),
        MPNNEncoder.Params(dim=8, layers=3, radius=0),
        MPNNEncoder.Params(dim=8, trainable=False),
    ],
)
def test_mpnn_conforms(params: MPNNEncoder.Params) -> None:
    assert set(check_component(MPNNEncoder, params)) == DRUG_CHECKS


def test_default_params_conform() -> None:
    with pytest.warns(UserWarning, match="no parsed molecule"):
        assert set(check_component(MPNNEncoder)) == DRUG_CHECKS


def test_fallback_rows_and_fake_schema_molecules() -> None:
    with pytest.warns(UserWarning, match=r"2 of 15 drugs have no parsed molecule \(M03X, M04X\)"):
        encoder = MPNNEncoder(MPNNEncoder.Params(dim=4), fake_schema())
    assert encoder.fallback_drugs == (FAKE_DRUG_WITHOUT_SMILES, FAKE_DRUG_UNPARSABLE)
    output = encoder()
    torch.testing.assert_close(output[list(encoder.fallback_drugs)], encoder.fallback)
    assert bool((output.abs().sum(1) > 0).all())  # no zero row, the calcium salt included


def test_weights_are_saved_buffers_are_not_and_no_batch_is_kept() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = MPNNEncoder(MPNNEncoder.Params(dim=4), fake_schema())
        frozen = MPNNEncoder(MPNNEncoder.Params(dim=4, trainable=False), fake_schema())
    keys = set(encoder.state_dict())
    assert keys == {"embedding.weight", "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                    "fallback"}
    assert set(frozen.state_dict()) == keys
    assert {"x", "edge_index", "batch", "atom_weight", "molecule_drug", "fallback_index"} == \
        {name for name, _ in encoder.named_buffers()}
    assert not any(isinstance(value, Batch) for value in vars(encoder).values())
    assert all(p.requires_grad for p in encoder.parameters())
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not frozen().requires_grad
    assert MPNNEncoder.knowledge_needed(MPNNEncoder.Params()) == {"molecules"}


def test_params_are_validated() -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError):
        MPNNEncoder.Params(atom_pooling="max")
    with pytest.raises(pydantic.ValidationError):
        MPNNEncoder.Params(layers=0)
    with pytest.raises(pydantic.ValidationError):
        MPNNEncoder.Params(radius=-1)
