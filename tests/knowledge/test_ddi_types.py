"""Typed and signed DDI (DeepDDI/DrugBank format): readers, template signs, SMILES match, matrices.

Everything uses tiny hand-made files under ``tmp_path``; the real CC BY-NC files are read only by
the opt-in tests at the end, which skip cleanly when ``../shared`` is absent.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from medtoolkit.knowledge.ddi_types import (
    Relation,
    TypePairs,
    fallback_relation_matrix,
    match_drugs_by_smiles,
    read_templates,
    read_type_pairs,
    signed_relation_matrix,
    template_sign,
    template_signs,
)

_REPO = Path(__file__).resolve().parents[2]


def _ddi_types_dir() -> Path:
    base = Path(os.environ.get("MEDTOOLKIT_SHARED_DATA", _REPO.parent / "shared" / "data"))
    return base / "drug-knowledge" / "ddi-types"


def _write(tmp_path: Path, text: str, name: str = "Drugbank.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- read_type_pairs ---------------------------------------------------------------------------

def test_read_pairs_tab_and_space(tmp_path: Path) -> None:
    path = _write(tmp_path, "drug1\tdrug2\tLabel\nDB00001\tDB00002\t1\nDB00002 DB00001  49\n")
    pairs = read_type_pairs(path)
    assert len(pairs) == 2
    assert list(pairs.drug1) == ["DB00001", "DB00002"]
    assert list(pairs.drug2) == ["DB00002", "DB00001"]  # directed: both orders kept
    assert pairs.labels.tolist() == [1, 49]
    assert pairs.source == str(path)


@pytest.mark.parametrize(("text", "needle"), [
    ("a\tb\tc\nDB00001\tDB00002\t1\n", "line 1: expected the header"),
    ("drug1\tdrug2\tLabel\nDB00001\tDB00002\t1\nDB00001\tDB00002\tx\n", "line 3: Label 'x'"),
    ("drug1\tdrug2\tLabel\nDB00001\tDB00002\t0\n", "line 2: Label '0'"),
    ("drug1\tdrug2\tLabel\nDB00001\tDB00002\t1\nDB00001\tDB00002\n", "line 3: expected 3 fields"),
    ("drug1\tdrug2\tLabel\nDB00001\tDB00002\t1\tz\n", "line 2: expected 3 fields"),
    ("drug1\tdrug2\tLabel\nDB00001\tDB00002\t1\n\nDB00001\tDB00002\t1\n", "line 3: empty line"),
    ("drug1\tdrug2\tLabel\nDB00001\taspirin\t1\n", "line 2: drug2 'aspirin'"),
])
def test_read_pairs_refuses_bad_lines(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")) as info:
        read_type_pairs(path)
    assert needle in str(info.value)


def test_read_pairs_max_label_size_and_missing(tmp_path: Path) -> None:
    path = _write(tmp_path, "drug1 drug2 Label\nDB00001 DB00002 87\n")
    assert read_type_pairs(path).labels.tolist() == [87]
    with pytest.raises(ValueError, match="line 2: Label 87 exceeds max_label=86"):
        read_type_pairs(path, max_label=86)
    with pytest.raises(ValueError, match="exceeds the 0 MiB limit"):
        read_type_pairs(path, max_bytes=10)
    with pytest.raises(FileNotFoundError):
        read_type_pairs(tmp_path / "absent.txt")
    empty = _write(tmp_path, "drug1 drug2 Label\n", "empty.txt")
    with pytest.raises(ValueError, match="no pairs"):
        read_type_pairs(empty)
    any_ids = _write(tmp_path, "drug1 drug2 Label\nA B 2\n", "ids.txt")
    assert read_type_pairs(any_ids, id_pattern=None).drug1.tolist() == ["A"]


# ---- templates and signs -----------------------------------------------------------------------

def test_read_templates_column_names(tmp_path: Path) -> None:
    deepddi = _write(tmp_path, "Interaction type,Description,Subject,DDI type\n"
                     "49,The risk or severity of adverse effects can be increased when #Drug1 is combined with #Drug2.,3,DDI type 26\n"
                     "6,\"#Drug1 may increase the anticoagulant activities of #Drug2, a lot.\",2,DDI type 46\n",
                     "Interaction_information.csv")
    templates = read_templates(deepddi)
    assert list(templates) == [6, 49]  # Interaction type, not the "DDI type N" column
    assert templates[6].endswith("a lot.")
    tab = _write(tmp_path, "label\ttemplate\n1\t#Drug1 may decrease the analgesic activities of #Drug2.\n", "t.tsv")
    assert read_templates(tab) == {1: "#Drug1 may decrease the analgesic activities of #Drug2."}


@pytest.mark.parametrize(("text", "needle"), [
    ("id,text\n1,x\n", "line 1: need a type column"),
    ("Label,Description\n1,a\nx,b\n", "line 3: type 'x'"),
    ("Label,Description\n1,a\n1,b\n", "line 3: duplicate type 1"),
    ("Label,Description\n1,\n", "line 2: empty template"),
])
def test_read_templates_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text, "templates.csv")
    with pytest.raises(ValueError, match="templates.csv") as info:
        read_templates(path)
    assert needle in str(info.value)


@pytest.mark.parametrize(("template", "sign"), [
    ("The risk or severity of adverse effects can be increased when #Drug1 is combined with #Drug2.", Relation.ANTAGONISM),
    ("The risk of a hypersensitivity reaction to #Drug2 is increased when it is combined with #Drug1.", Relation.ANTAGONISM),
    ("#Drug1 can cause an increase in the absorption of #Drug2 resulting in an increased serum concentration "
     "and potentially a worsening of adverse effects.", Relation.ANTAGONISM),
    ("#Drug1 can cause a decrease in the absorption of #Drug2 resulting in a reduced serum concentration "
     "and potentially a decrease in efficacy.", Relation.ANTAGONISM),
    ("The therapeutic efficacy of #Drug2 can be decreased when used in combination with #Drug1.", Relation.ANTAGONISM),
    ("The therapeutic efficacy of #Drug2 can be increased when used in combination with #Drug1.", Relation.SYNERGY),
    ("#Drug1 may decrease effectiveness of #Drug2 as a diagnostic agent.", Relation.ANTAGONISM),
    ("#Drug1 may increase the antihypertensive activities of #Drug2.", Relation.SYNERGY),
    ("#Drug1 may increase the anticoagulant activities of #Drug2.", Relation.SYNERGY),
    ("#Drug1 may decrease the hypoglycemic activities of #Drug2.", Relation.ANTAGONISM),
    ("#Drug1 may increase the cardiotoxic activities of #Drug2.", Relation.ANTAGONISM),
    ("#Drug1 may increase the hypertensive activities of #Drug2.", Relation.ANTAGONISM),
    ("#Drug1 may increase the hypotensive activities of #Drug2.", Relation.SYNERGY),
    ("#Drug1 may increase the orthostatic hypotensive activities of #Drug2.", Relation.ANTAGONISM),
    ("#Drug1 may decrease the cardiotoxic activities of #Drug2.", Relation.UNKNOWN),
    ("The metabolism of #Drug2 can be increased when combined with #Drug1.", Relation.ANTAGONISM),
    ("The metabolism of #Drug2 can be decreased when combined with #Drug1.", Relation.UNKNOWN),
    ("The serum concentration of #Drug2 can be decreased when it is combined with #Drug1.", Relation.ANTAGONISM),
    ("The serum concentration of #Drug2 can be increased when it is combined with #Drug1.", Relation.UNKNOWN),
    ("#Drug1 may decrease the excretion rate of #Drug2 which could result in a higher serum level.", Relation.UNKNOWN),
    ("#Drug1 may increase the excretion rate of #Drug2 which could result in a lower serum level.", Relation.ANTAGONISM),
    ("The protein binding of #Drug2 can be decreased when combined with #Drug1.", Relation.UNKNOWN),
    ("#Drug1 interacts with #Drug2.", Relation.UNKNOWN),
])
def test_template_sign(template: str, sign: Relation) -> None:
    assert template_sign(template) is sign


def test_exposure_up_option() -> None:
    up = "#Drug1 may decrease the excretion rate of #Drug2 which could result in a higher serum level."
    down = "The metabolism of #Drug2 can be increased when combined with #Drug1."
    assert template_sign(up, exposure_up=Relation.SYNERGY) is Relation.SYNERGY  # DPR's case study
    assert template_sign(down, exposure_up=Relation.SYNERGY) is Relation.ANTAGONISM
    assert template_signs({1: up, 2: down}) == {1: Relation.UNKNOWN, 2: Relation.ANTAGONISM}


# ---- SMILES matching ---------------------------------------------------------------------------

def test_match_by_smiles() -> None:
    pytest.importorskip("rdkit")
    drugbank = {"DB1": "OCC", "DB2": "c1ccccc1", "DB3": "not a smiles", "DB4": "CCCC", "DB5": "C[C@H](N)C(=O)O"}
    atc = {"A01": ["CCO"], "B02": ["C1=CC=CC=C1", "CCO"], "C03": ["((("], "D04": ["CC(N)C(=O)O"]}
    mapping, coverage = match_drugs_by_smiles(drugbank, atc)
    assert mapping == {"DB1": ["A01", "B02"], "DB2": ["B02"], "DB5": ["D04"]}  # stereo ignored by default
    assert coverage["n_drugbank"] == 5 and coverage["n_drugbank_matched"] == 3
    assert coverage["n_drugbank_unparsable"] == 1
    assert coverage["n_atc"] == 4 and coverage["n_atc_matched"] == 3
    assert coverage["n_atc_smiles"] == 5 and coverage["n_atc_smiles_unparsable"] == 1
    assert coverage["unmatched_atc"] == ["C03"]
    assert coverage["drugbank_fraction"] == pytest.approx(0.6)
    isomeric, _ = match_drugs_by_smiles(drugbank, atc, isomeric=True)
    assert "DB5" not in isomeric


def test_match_without_rdkit_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name == "rdkit" or name.startswith("rdkit."):
            raise ImportError("no rdkit")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "medtoolkit\[chem\]"'):
        match_drugs_by_smiles({"DB1": "C"}, {"A01": ["C"]})


# ---- matrices ----------------------------------------------------------------------------------

def _pairs(rows: list[tuple[str, str, int]]) -> TypePairs:
    return TypePairs(drug1=np.array([r[0] for r in rows], dtype=object), drug2=np.array([r[1] for r in rows], dtype=object),
                     labels=np.array([r[2] for r in rows], dtype=np.int16), source="hand")


def test_signed_matrix_aggregation_by_hand() -> None:
    # labels: 1 synergy, 2 antagonism, 3 unknown, 9 not in the sign table (-> unknown)
    signs = {1: Relation.SYNERGY, 2: Relation.ANTAGONISM, 3: Relation.UNKNOWN}
    drug_to_atc = {"DB1": ["A"], "DB2": ["B"], "DB3": ["B", "C"], "DB4": ["A"], "DB9": ["Z"]}
    pairs = _pairs([
        ("DB1", "DB2", 1),   # A->B synergy
        ("DB4", "DB2", 3),   # A->B unknown: synergy wins
        ("DB2", "DB1", 3),   # B->A unknown
        ("DB1", "DB3", 1),   # A->B synergy, A->C synergy
        ("DB4", "DB3", 2),   # A->B, A->C antagonism: wins over synergy
        ("DB3", "DB1", 9),   # B->A, C->A unknown (label without sign)
        ("DB1", "DB4", 2),   # A->A: same ATC, left NONE
        ("DB1", "DB7", 1),   # DB7 has no ATC: unmatched
        ("DB9", "DB1", 1),   # DB9's code not in the vocabulary: unmatched
    ])
    relation, report = signed_relation_matrix(pairs, signs, drug_to_atc, ["A", "B", "C", "D"])
    assert relation.dtype == np.int8 and relation.shape == (4, 4)
    expected = np.zeros((4, 4), dtype=np.int8)
    expected[0, 1] = expected[0, 2] = Relation.ANTAGONISM
    expected[1, 0] = expected[2, 0] = Relation.UNKNOWN
    np.testing.assert_array_equal(relation, expected)
    assert report["n_pairs"] == 9
    assert report["n_pairs_matched"] == 7 and report["n_pairs_unmatched"] == 2
    assert report["n_pairs_same_atc"] == 1
    assert report["n_pairs_unsigned_label"] == 1
    assert report["pairs_by_sign"] == {"SYNERGY": 4, "ANTAGONISM": 2, "UNKNOWN": 3}
    assert report["cells_by_sign"] == {"NONE": 12, "SYNERGY": 0, "ANTAGONISM": 2, "UNKNOWN": 2}
    assert report["n_cells_conflicting"] == 2  # A->B (syn, unk, ant), A->C (syn, ant)
    assert report["n_atc_with_relation"] == 3
    assert report["unmatched_atc"] == ["D"]
    assert report["source"] == "hand"


def test_signed_matrix_without_templates_is_unknown() -> None:
    pairs = _pairs([("DB1", "DB2", 1), ("DB2", "DB1", 2)])
    relation, report = signed_relation_matrix(pairs, None, {"DB1": ["A"], "DB2": ["B"]}, ["A", "B"])
    np.testing.assert_array_equal(relation, [[0, 3], [3, 0]])
    assert "every typed pair is UNKNOWN" in report["note"]
    assert report["n_pairs_unsigned_label"] == 2


def test_fallback_matrix() -> None:
    adjacency = np.array([[0, 1, 0], [0, 0, 0], [0, 0, 1]], dtype=np.float32)
    relation, report = fallback_relation_matrix(adjacency)
    np.testing.assert_array_equal(relation, [[0, 2, 0], [2, 0, 0], [0, 0, 0]])
    assert relation.dtype == np.int8
    assert report["source"] == "ddi_adjacency" and "ANTAGONISM edges only" in report["note"]
    assert report["n_edges"] == 1
    with pytest.raises(ValueError, match="must be"):
        fallback_relation_matrix(np.zeros((2, 3)))


def test_fallback_on_shipped_adjacency() -> None:
    from medtoolkit.knowledge import ddi_adjacency, ddi_pairs

    a, b = ddi_pairs().iloc[0]
    relation, _ = fallback_relation_matrix(ddi_adjacency([a, b, "Z99Z"]))
    assert relation[0, 1] == relation[1, 0] == Relation.ANTAGONISM
    assert not relation[2].any()


# ---- opt-in: the real (CC BY-NC, never vendored) files ---------------------------------------

def test_real_drugbank_file() -> None:
    path = _ddi_types_dir() / "Drugbank.txt"
    if not path.exists():
        pytest.skip(f"typed DDI file not found at {path}")
    start = time.perf_counter()
    pairs = read_type_pairs(path, max_label=86)
    elapsed = time.perf_counter() - start
    print(f"read_type_pairs({path.name}): {len(pairs):,} rows in {elapsed:.3f} s")
    assert len(pairs) == 192_284
    assert pairs.labels.min() >= 1 and pairs.labels.max() <= 86
    assert len(np.unique(pairs.labels)) == 86
    assert len(set(pairs.drug1) | set(pairs.drug2)) == 1_710


def test_real_templates_signed() -> None:
    path = _ddi_types_dir() / "Interaction_information.csv"
    if not path.exists():
        pytest.skip(f"type templates not found at {path}")
    signs = template_signs(read_templates(path))
    assert sorted(signs) == list(range(1, 87))
    assert signs[49] is Relation.ANTAGONISM  # the most frequent type: risk or severity of adverse effects
    assert signs[10] is Relation.SYNERGY  # increase the antihypertensive activities (DPR table 2)
    assert signs[47] is Relation.UNKNOWN  # metabolism decreased: exposure up, sign not stated
    counts = {r.name: sum(s is r for s in signs.values()) for r in Relation}
    print(f"template signs: {counts}")
    assert counts["NONE"] == 0
