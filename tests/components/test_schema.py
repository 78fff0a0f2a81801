"""``DataSchema``: missing DDI matrix, SMILES or rdkit is explicit; molecules are built lazily, once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from medtoolkit.components.schema import DataSchema
from medtoolkit.knowledge import MoleculeGraphs
from medtoolkit.testing.fake import (
    FAKE_DRUG_UNPARSABLE,
    FAKE_DRUG_WITHOUT_SMILES,
    FAKE_DRUG_WITHOUT_SUBSTRUCTURES,
    fake_schema,
)


# molecule graphs cached by default go to a temporary directory, never the user's cache
pytestmark = pytest.mark.usefixtures("private_cache_dir")


def test_require_ddi_returns_the_matrix_or_names_the_component() -> None:
    matrix = np.zeros((2, 2), dtype=np.float32)
    with_ddi = DataSchema(vocab_sizes={"medications": 2}, n_drugs=2, ddi_adjacency=matrix)
    assert with_ddi.has_ddi and with_ddi.require_ddi("loss 'ddi'") is matrix
    without = DataSchema(vocab_sizes={"medications": 2}, n_drugs=2, ddi_adjacency=None)
    assert not without.has_ddi
    with pytest.raises(ValueError) as caught:
        without.require_ddi("loss 'ddi'")
    assert str(caught.value) == (
        "loss 'ddi' needs a DDI matrix, but the dataset has no DDI matrix (ddi_adjacency is none); "
        "remove that component or load a dataset with one"
    )


# ---------------------------------------------------------------------------------- molecules
def molecule_schema(**fields: object) -> DataSchema:
    # drug 0: ethanol; drug 1: benzene and methane; drug 2: no SMILES
    values: dict = {"smiles": (("CCO",), ("c1ccccc1", "C"), ())}
    values.update(fields)
    return DataSchema(vocab_sizes={"medications": 3}, n_drugs=3, ddi_adjacency=None, **values)


def test_require_molecules_builds_once_per_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    import medtoolkit.knowledge.molecules as molecules

    monkeypatch.setenv("MEDTOOLKIT_CACHE_DIR", str(tmp_path))  # never the user's cache

    calls: list[bool] = []
    original = molecules.molecule_graphs

    def counting(smiles_lists, explicit_hydrogens=False):  # type: ignore[no-untyped-def]
        calls.append(explicit_hydrogens)
        return original(smiles_lists, explicit_hydrogens=explicit_hydrogens)

    monkeypatch.setattr(molecules, "molecule_graphs", counting)
    schema = molecule_schema()
    assert schema.molecule_summary() is None  # nothing built yet
    graphs = schema.require_molecules("encoder 'mpnn'")
    assert schema.require_molecules("encoder 'mpnn'") is graphs
    with_h = schema.require_molecules("encoder 'mpnn'", explicit_hydrogens=True)
    assert schema.require_molecules("encoder 'mpnn'", explicit_hydrogens=True) is with_h
    assert calls == [False, True]
    # heavy atoms 3 + 6 + 1, bonds 2 + 6 + 0; with H: C2H6O + C6H6 + CH4 = 9 + 12 + 5 atoms and
    # 8 + 12 + 4 bonds (one more bond per hydrogen)
    assert (graphs.n_atoms, graphs.n_bonds, with_h.n_atoms, with_h.n_bonds) == (10, 8, 26, 24)
    assert graphs.molecule_drug.tolist() == [0, 1, 1] and graphs.drugs_without_molecules == (2,)
    # the cache changes neither equality nor repr
    assert schema == molecule_schema() and "_lazy" not in repr(schema)
    assert schema.molecule_summary() == {"drugs": 3, "molecules": 3, "atoms": 26, "bonds": 24, "failed": 0,
                                         "drugs_without_molecules": 1, "explicit_hydrogens": True}
    # a new schema (a later run) loads both from the disk cache under $MEDTOOLKIT_CACHE_DIR: no rdkit
    assert len(list((tmp_path / "molecules").glob("*.npz"))) == 2
    later = molecule_schema()
    again = later.require_molecules("encoder 'mpnn'")
    again_h = later.require_molecules("encoder 'mpnn'", explicit_hydrogens=True)
    assert calls == [False, True]
    assert again is not graphs and again.summary() == graphs.summary()
    assert again.molecule_smiles == graphs.molecule_smiles and np.array_equal(again.edge_index, graphs.edge_index)
    assert again_h.summary() == with_h.summary()


def test_prebuilt_molecules_are_used_when_the_option_matches() -> None:
    prebuilt = MoleculeGraphs(np.zeros((1, 7)), np.zeros((2, 0)), np.zeros((0, 3)), np.array([0]),
                              np.array([0]), ("C",), n_drugs=3)
    schema = molecule_schema(smiles=None, molecules=prebuilt)
    assert schema.require_molecules("encoder 'mpnn'") is prebuilt  # no rdkit needed
    with pytest.raises(ValueError, match="prebuilt molecules have explicit_hydrogens=False"):
        schema.require_molecules("encoder 'mpnn'", explicit_hydrogens=True)


def test_require_molecules_names_the_component_and_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError) as caught:
        molecule_schema(smiles=None).require_molecules("encoder 'mpnn'")
    assert str(caught.value) == (
        "encoder 'mpnn' needs molecule graphs, but the dataset has no SMILES (smiles is none or empty); "
        "remove that component or load a dataset with SMILES"
    )
    with pytest.raises(ValueError, match="has no SMILES"):
        molecule_schema(smiles=((), (), ())).require_molecules("encoder 'mpnn'")
    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(ImportError) as missing:
        molecule_schema().require_molecules("encoder 'mpnn'")
    assert str(missing.value) == (
        "encoder 'mpnn' needs molecule graphs built from SMILES with rdkit, which is not installed: "
        'pip install "medtoolkit[chem]"'
    )


def test_require_substructures_prefers_the_datasets_mask() -> None:
    mask = np.array([[1, 0], [1, 1], [0, 0]])
    schema = molecule_schema(substructure_mask=mask)
    result = schema.require_substructures("recommender 'safedrug'")
    assert result.dtype == np.float32 and result.tolist() == [[1, 0], [1, 1], [0, 0]]
    assert schema.molecule_summary() == {"substructures": 2}
    with pytest.raises(ValueError, match=r"recommender 'safedrug': the substructure mask has shape \(2, 2\)"):
        molecule_schema(substructure_mask=mask[:2]).require_substructures("recommender 'safedrug'")


def test_require_substructures_from_smiles_is_brics() -> None:
    pytest.importorskip("rdkit")
    schema = molecule_schema()
    # no BRICS bond in ethanol, benzene or methane: each molecule is its own fragment;
    # sorted columns "C" < "CCO" < "c1ccccc1"; drug 2 (no SMILES) gets an empty row
    mask = schema.require_substructures("recommender 'safedrug'")
    assert mask.dtype == np.float32 and mask.tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 0]]
    assert schema.require_substructures("recommender 'safedrug'") is mask


def test_require_substructures_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError) as caught:
        molecule_schema(smiles=None).require_substructures("recommender 'safedrug'")
    assert str(caught.value) == (
        "recommender 'safedrug' needs a substructure mask, but the dataset has neither a substructure mask "
        "nor SMILES to build one from; remove that component or load a dataset with one"
    )
    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(ImportError, match=r"recommender 'safedrug' needs a substructure mask built from SMILES "
                                          r'with rdkit, which is not installed: pip install "medtoolkit\[chem\]"'):
        molecule_schema().require_substructures("recommender 'safedrug'")
    # a shipped mask needs no rdkit
    assert molecule_schema(substructure_mask=np.eye(3, 2)).require_substructures("x").shape == (3, 2)


def test_fake_schema_carries_molecules_with_both_fallbacks() -> None:
    pytest.importorskip("rdkit")
    schema = fake_schema()
    graphs = schema.require_molecules("encoder 'mpnn'")
    assert graphs.n_drugs == schema.n_drugs == 15
    assert graphs.failed == ((FAKE_DRUG_UNPARSABLE, "not_a_smiles", "rdkit could not parse it"),)
    assert graphs.drugs_without_molecules == (FAKE_DRUG_WITHOUT_SMILES, FAKE_DRUG_UNPARSABLE)
    mask = schema.require_substructures("recommender 'safedrug'")
    assert mask.shape == (15, 6) and mask[FAKE_DRUG_WITHOUT_SUBSTRUCTURES].sum() == 0
    # drug 2 ([Na+].[Cl-]): two ions, no bond; drug 0 (CCO): substructures 0 and 1
    sodium_chloride = graphs.atom_molecule == list(graphs.molecule_drug).index(2)
    assert sodium_chloride.sum() == 2 and graphs.atom_features[sodium_chloride, 2].tolist() == [0, 0]
    assert mask[0].tolist() == [1, 1, 0, 0, 0, 0]


# ---------------------------------------------------------------------------------- hospitals
def test_hospital_facts_default_to_unknown_and_are_kept() -> None:
    plain = DataSchema(vocab_sizes={"medications": 2}, n_drugs=2, ddi_adjacency=None)
    assert plain.n_hospitals == 0 and plain.hospital_sizes is None and plain.hospital_ids == ()
    sizes = np.array([1200, 40, 2500])
    schema = DataSchema(vocab_sizes={"medications": 2}, n_drugs=2, ddi_adjacency=None, n_hospitals=3,
                        hospital_sizes=sizes, hospital_ids=("73", "264", "420"))
    assert schema.hospital_sizes is sizes and schema.hospital_ids == ("73", "264", "420")
    # equality compares the hospital ids, not the array (arrays have no single truth value)
    assert schema == DataSchema(vocab_sizes={"medications": 2}, n_drugs=2, ddi_adjacency=None, n_hospitals=3,
                                hospital_sizes=sizes.copy(), hospital_ids=("73", "264", "420"))
