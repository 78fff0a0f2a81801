"""SMILES per ATC class, BRICS masks and molecule graphs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medtoolkit.knowledge import (
    ATOM_FEATURE_SIZES,
    ATOM_FEATURES,
    BOND_FEATURE_SIZES,
    BOND_FEATURES,
    MoleculeGraphs,
    brics_decompose,
    brics_mask,
    build_drug_knowledge,
    cached_molecule_graphs,
    drug_knowledge_names,
    molecule_graphs,
    rdkit_available,
    smiles_for,
)


# molecule graphs cached by default go to a temporary directory, never the user's cache
pytestmark = pytest.mark.usefixtures("private_cache_dir")


def test_smiles_sorted_capped_and_atc4_prefix() -> None:
    table = {"N02B": ["c", "a", "b", "a", "d"], "A01A": ["x"]}
    assert smiles_for(["N02B", "N02BE", "A01A", "Z99Z"], table=table) == [
        ["a", "b", "c"], ["a", "b", "c"], ["x"], []]
    assert smiles_for(["N02B"], table=table, max_per_class=None) == [["a", "b", "c", "d"]]
    shipped = smiles_for(["N02B", "A01A"])
    assert all(1 <= len(s) <= 3 and s == sorted(s) for s in shipped)


def test_smiles_choice_independent_of_hash_seed() -> None:
    code = ("from medtoolkit.knowledge import smiles_for, brics_mask;"
            "s = smiles_for(['N02B','A01A','B01A','J01C','L01X']);"
            "print(repr(s)); print(repr(brics_mask(s)[1]))")
    # this process runs under another (usually random) hash seed than the child
    s = smiles_for(["N02B", "A01A", "B01A", "J01C", "L01X"])
    expected = f"{s!r}\n{brics_mask(s)[1]!r}\n"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            check=True)
    assert result.stdout == expected


def test_brics_mask_sorted_and_counts_failures() -> None:
    pytest.importorskip("rdkit")
    smiles = [["CC(=O)OC1=CC=CC=C1C(O)=O"], ["not a smiles", "CCO"], []]
    with pytest.warns(UserWarning, match="1 SMILES"):
        mask, fragments = brics_mask(smiles)
    assert fragments == sorted(fragments)
    assert mask.shape == (3, len(fragments)) and mask.dtype == np.float32
    assert mask[2].sum() == 0 and mask[1].sum() >= 1
    result = brics_decompose(smiles)
    assert result.unparsable == [(1, "not a smiles")]
    assert [set(np.asarray(result.fragments)[row > 0]) for row in result.mask] == \
        [set(s) for s in result.per_drug]


def test_build_drug_knowledge() -> None:
    pytest.importorskip("rdkit")
    knowledge = build_drug_knowledge(["N02B", "B01A", "Z99Z"])
    assert knowledge.n_drugs == 3
    assert knowledge.smiles is not None and knowledge.smiles[2] == []
    assert knowledge.substructure_mask is not None and knowledge.substructure_mask.shape[0] == 3
    assert "Z99Z" in knowledge.provenance["ddi_coverage"]
    assert {"ddi", "smiles", "substructures"} <= set(knowledge.provenance)
    level4 = build_drug_knowledge(["N02BE", "B01AC"], atc_level=4, with_substructures=False)
    assert level4.substructure_mask is None
    with pytest.raises(ValueError):
        build_drug_knowledge(["N02B"], atc_level=4)


@pytest.mark.benchmark_data
def test_brics_reproduces_benchmark_mask(safedrug_dir: Path) -> None:
    """Notes §1.3: 111/112 rows reproduced; L01X gives 10 fragments instead of 7 (445 vs 442)."""
    pytest.importorskip("rdkit")
    from collections import Counter

    from medtoolkit.data.safe_pickle import safe_load

    idx2word = safe_load(safedrug_dir / "voc_final.pkl")["med_voc"].idx2word
    codes = [idx2word[i] for i in range(len(idx2word))]
    atc3_smiles = safe_load(safedrug_dir / "atc3toSMILES.pkl")
    reference = np.asarray(safe_load(safedrug_dir / "ddi_mask_H.pkl"), dtype=int)
    result = brics_decompose([atc3_smiles[c] for c in codes])
    assert result.unparsable == []
    ours = result.mask.astype(int)
    # the reference has no fragment names: match columns as drug-membership patterns (a column
    # permutation); a drug's fragment set is reproduced when no unmatched column touches it
    ours_cols, ref_cols = Counter(map(tuple, ours.T)), Counter(map(tuple, reference.T))
    unmatched = (ours_cols - ref_cols) + (ref_cols - ours_cols)
    differing_rows = {i for pattern in unmatched for i in np.nonzero(pattern)[0]}
    assert sorted(codes[i] for i in differing_rows) == ["L01X"]
    assert sum((ref_cols - ours_cols).values()) == 0  # every reference column is reproduced
    assert ours.shape == (112, 445) and reference.shape == (112, 442)
    row = codes.index("L01X")
    assert (ours[row].sum(), reference[row].sum()) == (10, 7)


# ---------------------------------------------------------------------------------- molecule graphs
# Values below are worked out by hand from the structural formulas (atom order = SMILES order).

def test_ethanol_without_hydrogens() -> None:
    pytest.importorskip("rdkit")
    graphs = molecule_graphs([["CCO"]])
    # C-C-O: 3 heavy atoms, 2 single bonds, each bond in both directions
    assert (graphs.n_atoms, graphs.n_bonds) == (3, 2)
    assert graphs.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert graphs.edge_features.tolist() == [[0, 0, 0]] * 4  # single, not conjugated, no ring
    assert graphs.atom_molecule.tolist() == [0, 0, 0] and graphs.molecule_drug.tolist() == [0]
    # atomic_num, aromatic, degree, charge + 5, total H, hybridization (4 = sp3), in ring
    assert graphs.atom_features.tolist() == [[6, 0, 1, 5, 3, 4, 0], [6, 0, 2, 5, 2, 4, 0], [8, 0, 1, 5, 1, 4, 0]]
    assert graphs.atom_features.dtype == np.int64 and graphs.edge_index.dtype == np.int64
    assert graphs.atom_features.shape[1] == len(ATOM_FEATURES) == len(ATOM_FEATURE_SIZES)
    assert graphs.edge_features.shape[1] == len(BOND_FEATURES) == len(BOND_FEATURE_SIZES)
    assert graphs.molecule_smiles == ("CCO",) and graphs.failed == () and graphs.drugs_without_molecules == ()


def test_ethanol_with_explicit_hydrogens() -> None:
    pytest.importorskip("rdkit")
    graphs = molecule_graphs([["CCO"]], explicit_hydrogens=True)
    # C2H6O: 9 atoms; 2 heavy bonds + 6 C-H/O-H bonds = 8
    assert (graphs.n_atoms, graphs.n_bonds, graphs.edge_index.shape) == (9, 8, (2, 16))
    # hydrogens are now neighbours: degrees 4, 4, 2; the total H count is unchanged
    assert graphs.atom_features[:3, 2].tolist() == [4, 4, 2]
    assert graphs.atom_features[:3, 4].tolist() == [3, 2, 1]
    assert graphs.atom_features[3:, 0].tolist() == [1] * 6 and graphs.explicit_hydrogens


def test_benzene_bonds_are_aromatic_and_in_the_ring() -> None:
    pytest.importorskip("rdkit")
    graphs = molecule_graphs([["c1ccccc1"]])
    assert (graphs.n_atoms, graphs.n_bonds) == (6, 6)
    assert graphs.edge_features.tolist() == [[3, 1, 1]] * 12  # aromatic, conjugated, in ring
    # every carbon: aromatic, 2 ring neighbours, 1 H, sp2 (3), in ring
    assert graphs.atom_features.tolist() == [[6, 1, 2, 5, 1, 3, 1]] * 6


def test_calcium_carbonate_salt_is_one_graph_with_a_bondless_ion() -> None:
    """A02A's SMILES (reference notes pitfall 10): Ca2+ has no bond and must not crash anything."""
    pytest.importorskip("rdkit")
    graphs = molecule_graphs([["[Ca++].[O-]C([O-])=O"]])
    # Ca, O-, C, O-, O: 5 atoms in one molecule; C-O-, C-O-, C=O: 3 bonds
    assert (graphs.n_atoms, graphs.n_bonds, graphs.n_molecules) == (5, 3, 1)
    assert graphs.atom_molecule.tolist() == [0] * 5
    calcium = graphs.atom_features[0]
    assert (calcium[0], calcium[2], calcium[3]) == (20, 0, 7)  # Ca, degree 0, charge +2 -> 7
    assert 0 not in graphs.edge_index  # no edge touches the calcium
    assert graphs.atom_features[2, 2] == 3  # the carbon has three oxygens
    assert graphs.edge_features[::2, 0].tolist() == [0, 0, 1]  # single, single, double
    assert graphs.atom_features[[1, 3, 4], 3].tolist() == [4, 4, 5]  # O-, O-, O


def test_molecules_of_several_drugs_are_offset_and_ordered() -> None:
    pytest.importorskip("rdkit")
    graphs = molecule_graphs([["CCO", "C"], ["CC"]])
    # drug 0: ethanol (atoms 0-2) and methane (atom 3, no bond); drug 1: ethane (atoms 4-5)
    assert graphs.molecule_drug.tolist() == [0, 0, 1]
    assert graphs.atom_molecule.tolist() == [0, 0, 0, 1, 2, 2]
    assert graphs.edge_index.tolist() == [[0, 1, 1, 2, 4, 5], [1, 0, 2, 1, 5, 4]]
    assert graphs.molecule_smiles == ("CCO", "C", "CC")


def test_failures_are_recorded_never_raised() -> None:
    pytest.importorskip("rdkit")
    graphs = molecule_graphs([["not_a_smiles"], [], ["", "C"]])
    assert graphs.failed == ((0, "not_a_smiles", "rdkit could not parse it"), (2, "", "no atoms"))
    assert graphs.drugs_without_molecules == (0, 1)  # only a failed SMILES; none at all
    assert graphs.molecule_drug.tolist() == [2] and graphs.n_drugs == 3
    assert graphs.summary() == {"drugs": 3, "molecules": 1, "atoms": 1, "bonds": 0, "failed": 2,
                                "drugs_without_molecules": 2, "explicit_hydrogens": False}


def test_no_molecules_at_all_gives_empty_arrays_of_the_right_shape() -> None:
    pytest.importorskip("rdkit")
    graphs = molecule_graphs([[], ["xx"]])
    assert graphs.atom_features.shape == (0, 7) and graphs.edge_index.shape == (2, 0)
    assert graphs.edge_features.shape == (0, 3) and graphs.atom_molecule.shape == (0,)
    assert graphs.molecule_drug.shape == (0,) and graphs.drugs_without_molecules == (0, 1)


def test_graphs_built_by_hand_are_checked() -> None:
    # no rdkit needed: one drug, one molecule of two bonded atoms
    atoms = np.zeros((2, 7), dtype=np.int64)
    graphs = MoleculeGraphs(atoms, np.array([[0, 1], [1, 0]]), np.zeros((2, 3)), np.array([0, 0]),
                            np.array([0]), ("CC",), n_drugs=1)
    assert graphs.summary()["bonds"] == 1 and graphs.edge_features.dtype == np.int64
    assert repr(graphs).startswith("MoleculeGraphs(drugs=1, molecules=1, atoms=2, bonds=1")
    with pytest.raises(ValueError, match="atom_features must have shape"):
        MoleculeGraphs(atoms[:1], np.zeros((2, 0)), np.zeros((0, 3)), np.array([0, 0]), np.array([0]),
                       ("CC",), n_drugs=1)
    with pytest.raises(ValueError, match="refers to atoms that do not exist"):
        MoleculeGraphs(atoms, np.array([[0, 2], [2, 0]]), np.zeros((2, 3)), np.array([0, 0]),
                       np.array([0]), ("CC",), n_drugs=1)
    with pytest.raises(ValueError, match="molecule_drug"):
        MoleculeGraphs(atoms, np.zeros((2, 0)), np.zeros((0, 3)), np.array([0, 0]), np.array([1]),
                       ("CC",), n_drugs=1)


def test_without_rdkit_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rdkit", None)
    assert not rdkit_available()
    with pytest.raises(ImportError, match=r'molecule graphs need rdkit.*pip install "medtoolkit\[chem\]"'):
        molecule_graphs([["CCO"]])


@pytest.mark.benchmark_data
def test_benchmark_smiles_all_parse(safedrug_dir: Path) -> None:
    """The 269 SafeDrug SMILES of the 112 drugs (counts measured with rdkit 2026.09.1)."""
    pytest.importorskip("rdkit")
    from medtoolkit.data.safe_pickle import safe_load

    idx2word = safe_load(safedrug_dir / "voc_final.pkl")["med_voc"].idx2word
    atc3_smiles = safe_load(safedrug_dir / "atc3toSMILES.pkl")
    smiles = [atc3_smiles[idx2word[i]] for i in range(len(idx2word))]
    summaries = [molecule_graphs(smiles, explicit_hydrogens=h).summary() for h in (False, True)]
    assert [(s["molecules"], s["atoms"], s["bonds"], s["failed"], s["drugs_without_molecules"])
            for s in summaries] == [(269, 6871, 7325, 0, 0), (269, 13227, 13681, 0, 0)]


def test_drug_knowledge_names_follow_rdkit(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rdkit")
    assert drug_knowledge_names() == {"ddi", "smiles", "substructures"}
    assert drug_knowledge_names(with_substructures=False) == {"ddi", "smiles"}
    monkeypatch.setitem(sys.modules, "rdkit", None)
    assert drug_knowledge_names() == {"ddi", "smiles"}


# ---------------------------------------------------------------------------- on-disk cache
_CACHE_SMILES = [["CCO"], ["c1ccccc1", "C", "not_a_smiles"], [], ["[Na+].[Cl-]"]]


def _counting_builder(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    import medtoolkit.knowledge.molecules as molecules

    calls: list[bool] = []
    original = molecules.molecule_graphs

    def counting(smiles_lists, explicit_hydrogens=False):  # type: ignore[no-untyped-def]
        calls.append(explicit_hydrogens)
        return original(smiles_lists, explicit_hydrogens=explicit_hydrogens)

    monkeypatch.setattr(molecules, "molecule_graphs", counting)
    return calls


def _assert_same_graphs(left: MoleculeGraphs, right: MoleculeGraphs) -> None:
    for name in ("atom_features", "edge_index", "edge_features", "atom_molecule", "molecule_drug"):
        assert getattr(left, name).dtype == getattr(right, name).dtype == np.int64, name
        np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)
    for name in ("molecule_smiles", "n_drugs", "failed", "drugs_without_molecules", "explicit_hydrogens",
                 "rdkit_version"):
        assert getattr(left, name) == getattr(right, name), name
        assert type(getattr(left, name)) is type(getattr(right, name)), name


@pytest.mark.parametrize("explicit_hydrogens", [False, True])
def test_cached_graphs_second_call_is_a_hit_and_equal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      explicit_hydrogens: bool) -> None:
    pytest.importorskip("rdkit")
    calls = _counting_builder(monkeypatch)
    built = cached_molecule_graphs(_CACHE_SMILES, explicit_hydrogens, cache_dir=tmp_path)
    assert calls == [explicit_hydrogens]
    entries = list((tmp_path / "molecules").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".npz" and len(entries[0].stem) == 64  # no temp files left
    with np.load(entries[0], allow_pickle=False) as npz:  # plain arrays only
        assert all(npz[name].dtype != object for name in npz.files)
    loaded = cached_molecule_graphs(_CACHE_SMILES, explicit_hydrogens, cache_dir=tmp_path)
    assert calls == [explicit_hydrogens]  # rdkit not called again
    assert loaded is not built
    _assert_same_graphs(loaded, built)
    _assert_same_graphs(loaded, molecule_graphs(_CACHE_SMILES, explicit_hydrogens=explicit_hydrogens))
    assert loaded.failed == ((1, "not_a_smiles", "rdkit could not parse it"),)
    assert loaded.drugs_without_molecules == (2,)


def test_cached_graphs_key_depends_on_smiles_and_hydrogens(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    from medtoolkit.knowledge.molecules import molecule_cache_path

    base = molecule_cache_path([["CCO"], ["C"]], cache_dir=tmp_path)
    assert base == molecule_cache_path([["CCO"], ["C"]], cache_dir=tmp_path)
    others = {molecule_cache_path([["CCO"], ["CC"]], cache_dir=tmp_path),
              molecule_cache_path([["CCO", "C"]], cache_dir=tmp_path),  # same SMILES, other drugs
              molecule_cache_path([["C"], ["CCO"]], cache_dir=tmp_path),
              molecule_cache_path([["CCO"], ["C"]], explicit_hydrogens=True, cache_dir=tmp_path)}
    assert len(others) == 4 and base not in others
    cached_molecule_graphs([["CCO"], ["C"]], cache_dir=tmp_path)
    other = cached_molecule_graphs([["CCO"], ["CC"]], cache_dir=tmp_path)
    assert other.molecule_smiles == ("CCO", "CC")
    assert len(list((tmp_path / "molecules").glob("*.npz"))) == 2


def test_cached_graphs_use_the_cache_dir_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rdkit")
    from medtoolkit.knowledge.molecules import molecule_cache_path

    monkeypatch.setenv("MEDTOOLKIT_CACHE_DIR", str(tmp_path / "env"))
    cached_molecule_graphs([["CCO"]])
    path = molecule_cache_path([["CCO"]])
    assert path.parent == tmp_path / "env" / "molecules" and path.is_file()


def _corrupt_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupt_garbage(path: Path) -> None:
    path.write_bytes(b"not an npz at all")


def _corrupt_pickle(path: Path) -> None:
    with open(path, "wb") as handle:  # an object array needs pickles: must be refused, not loaded
        np.savez(handle, meta=np.array([{"evil": 1}], dtype=object))


def _corrupt_meta(path: Path) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["meta"] = np.frombuffer(b'{"format": 1, "key": "x"}', dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _corrupt_shapes(path: Path) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["edge_index"] = arrays["edge_index"][:, :-1]
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.parametrize("corrupt", [_corrupt_truncated, _corrupt_garbage, _corrupt_pickle, _corrupt_meta,
                                     _corrupt_shapes])
def test_corrupt_cache_entry_is_rebuilt_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       corrupt) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("rdkit")
    from medtoolkit.knowledge.molecules import molecule_cache_path

    calls = _counting_builder(monkeypatch)
    built = cached_molecule_graphs(_CACHE_SMILES, cache_dir=tmp_path)
    path = molecule_cache_path(_CACHE_SMILES, cache_dir=tmp_path)
    corrupt(path)
    with pytest.warns(RuntimeWarning, match="corrupt, rebuilding"):
        rebuilt = cached_molecule_graphs(_CACHE_SMILES, cache_dir=tmp_path)
    assert calls == [False, False]
    _assert_same_graphs(rebuilt, built)
    loaded = cached_molecule_graphs(_CACHE_SMILES, cache_dir=tmp_path)  # the rewritten entry is good again
    assert calls == [False, False]
    _assert_same_graphs(loaded, built)


def test_symlinked_cache_entry_is_rebuilt_and_its_target_kept(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rdkit")
    from medtoolkit.knowledge.molecules import molecule_cache_path

    calls = _counting_builder(monkeypatch)
    cached_molecule_graphs(_CACHE_SMILES, cache_dir=tmp_path / "elsewhere")  # a valid file as the target
    target = molecule_cache_path(_CACHE_SMILES, cache_dir=tmp_path / "elsewhere")
    path = molecule_cache_path(_CACHE_SMILES, cache_dir=tmp_path / "cache")
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    content = target.read_bytes()
    with pytest.warns(RuntimeWarning, match="symlink"):
        cached_molecule_graphs(_CACHE_SMILES, cache_dir=tmp_path / "cache")
    assert calls == [False, False]
    assert not path.is_symlink() and path.is_file() and target.read_bytes() == content


def test_unwritable_cache_does_not_stop_the_build(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    graphs = cached_molecule_graphs([["CCO"]], cache_dir=blocker)
    assert graphs.n_atoms == 3 and blocker.read_text().startswith("a file")


def test_cached_graphs_without_rdkit_name_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(ImportError, match=r'pip install "medtoolkit\[chem\]"'):
        cached_molecule_graphs([["CCO"]], cache_dir=tmp_path)
    assert not (tmp_path / "molecules").exists()
