"""relations_from_directory on tiny hand-written DeepDDI-format files, and the task's relations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtoolkit.components.schema import DataSchema
from medtoolkit.knowledge.ddi_types import Relation, read_drug_smiles, relations_from_directory
from medtoolkit.tasks.package_relations import task_relations

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "drug-knowledge" / "ddi-types"


def write_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Drugbank.txt").write_text("drug1\tdrug2\tLabel\nDB01\tDB02\t1\nDB02\tDB03\t2\nDB09\tDB01\t2\n",
                                         encoding="utf-8")
    (folder / "Interaction_information.csv").write_text(
        "Interaction type,Description\n"
        "1,#Drug1 may increase the antihypertensive activities of #Drug2.\n"
        "2,The risk or severity of adverse effects can be increased when #Drug1 is combined with #Drug2.\n",
        encoding="utf-8")
    (folder / "drug_smiles.csv").write_text(",drug_id,smiles\n0,DB01,CCO\n1,DB02,c1ccccc1\n2,DB03,CC(=O)O\n"
                                            "3,DB09,\n", encoding="utf-8")
    return folder


CODES = ["A", "B", "C", "D"]
SMILES = {"A": ["OCC"], "B": ["c1ccccc1"], "C": ["CC(O)=O"], "D": ["CCN"]}


def test_signed_relations_coverage_and_report(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    relation, covered, report = relations_from_directory(write_files(tmp_path / "ddi"), CODES, SMILES)
    expected = np.zeros((4, 4), dtype=np.int8)
    expected[0, 1] = Relation.SYNERGY      # DB01 -> DB02, type 1 (increase antihypertensive activities)
    expected[1, 2] = Relation.ANTAGONISM   # DB02 -> DB03, type 2 (risk of adverse effects)
    np.testing.assert_array_equal(relation, expected)  # DB09 has no SMILES: its pair is unmatched
    np.testing.assert_array_equal(covered, [True, True, True, False])
    assert report["coverage"] == 0.75 and report["n_atc_matched"] == 3 and report["n_atc"] == 4
    assert report["pairs_by_sign"] == {"SYNERGY": 1, "ANTAGONISM": 2, "UNKNOWN": 0}
    assert report["n_pairs_matched"] == 2 and report["matching"]["n_drugbank_matched"] == 3
    assert read_drug_smiles(tmp_path / "ddi" / "drug_smiles.csv") == {"DB01": "CCO", "DB02": "c1ccccc1",
                                                                     "DB03": "CC(=O)O"}


def test_missing_files_are_named(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "ddi")
    (folder / "drug_smiles.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks drug_smiles.csv"):
        relations_from_directory(folder, CODES, SMILES)
    with pytest.raises(FileNotFoundError, match="typed DDI directory not found"):
        relations_from_directory(tmp_path / "nowhere", CODES, SMILES)


def test_task_relations_with_and_without_a_directory(tmp_path: Path) -> None:
    ddi = np.zeros((4, 4), dtype=np.float32)
    ddi[0, 3] = 1
    schema = DataSchema(vocab_sizes={}, n_drugs=4, ddi_adjacency=ddi, drug_codes=tuple(CODES),
                        smiles=tuple(tuple(SMILES[c]) for c in CODES))
    relation, covered, report = task_relations(None, schema)
    assert relation[0, 3] == relation[3, 0] == Relation.ANTAGONISM and int((relation != 0).sum()) == 2
    assert covered.all() and report["coverage"] == 1.0 and report["note"].startswith("antagonism only")
    none = DataSchema(vocab_sizes={}, n_drugs=4, ddi_adjacency=None)
    assert task_relations(None, none)[:2] == (None, None)
    pytest.importorskip("rdkit")
    relation, covered, report = task_relations(write_files(tmp_path / "ddi"), schema)
    assert report["source"] == "typed_ddi" and relation[0, 1] == Relation.SYNERGY and not covered[3]


@pytest.mark.skipif(not REAL.is_dir(), reason="the DeepDDI files are not present")
def test_the_real_files_read() -> None:
    pytest.importorskip("rdkit")
    relation, covered, report = relations_from_directory(REAL, ["N02BE01", "B01AC06"],
                                                         {"N02BE01": ["CC(=O)NC1=CC=C(O)C=C1"],
                                                          "B01AC06": ["CC(=O)OC1=CC=CC=C1C(O)=O"]})
    assert relation.shape == (2, 2) and covered.shape == (2,) and 0 <= report["coverage"] <= 1
