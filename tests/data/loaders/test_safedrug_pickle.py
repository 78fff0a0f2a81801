"""``safedrug_pickle``: the real benchmark's numbers, and clear errors on bad files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES
from medtoolkit.data.loaders.safedrug_pickle import SafeDrugFormatError, SafeDrugPickleDataset
from medtoolkit.data.safe_pickle import PickleTooLargeError, UnsafePickleError

dill = pytest.importorskip("dill")


def _load(root: Path, **options: Any):
    return SafeDrugPickleDataset(SafeDrugPickleDataset.Params(root=root, **options)).load(progress=False)


def _ddi_rate(data) -> float:
    """Pooled ground-truth DDI rate: interacting prescribed pairs / prescribed pairs."""
    visits = data.multi_hot(MEDICATIONS, np.arange(data.n_visits)).astype(np.float64)
    interacting = ((visits @ data.knowledge.ddi_adjacency) * visits).sum() / 2
    counts = visits.sum(axis=1)
    return float(interacting / (counts * (counts - 1) / 2).sum())


# ----------------------------------------------------------------------------- real benchmark
@pytest.fixture(scope="module")
def benchmark(safedrug_dir: Path):
    start = time.perf_counter()
    data = _load(safedrug_dir)
    return data, time.perf_counter() - start


def test_reference_numbers(benchmark) -> None:
    data, seconds = benchmark
    assert seconds < 5.0
    assert (data.n_patients, data.n_visits) == (6350, 15032)
    assert [len(data.vocabularies[v]) for v in (DIAGNOSES, PROCEDURES, MEDICATIONS)] == [1958, 1430, 112]
    assert data.knowledge.n_ddi_pairs == 337
    assert data.patient_ids[:3] == ["0", "1", "2"] and data.patient_ids[-1] == "6349"
    counts = np.bincount(data.visits_per_patient)
    assert counts[1] == 908 and counts[2] == 3792 and data.visits_per_patient.max() == 29
    per_visit = {v: len(data.codes[v]) / data.n_visits for v in data.codes}
    assert per_visit[DIAGNOSES] == pytest.approx(13.635, abs=1e-3)
    assert per_visit[PROCEDURES] == pytest.approx(4.536, abs=1e-3)
    assert per_visit[MEDICATIONS] == pytest.approx(19.573, abs=1e-3)
    assert _ddi_rate(data) == pytest.approx(0.082611, abs=1e-6)
    # visit layout [diag, proc, med]: the first visit prescribes medications 0..15
    assert data.visit_codes(MEDICATIONS, 0).tolist() == list(range(16))
    assert data.vocabularies[MEDICATIONS].idx2word[:3] == ["N02B", "A01A", "A02B"]
    assert data.vocabularies[DIAGNOSES].idx2word[0] == "4239"


def test_records_are_kept_verbatim_in_file_order(benchmark, safedrug_dir: Path) -> None:
    data, _ = benchmark
    with (safedrug_dir / "records_final.pkl").open("rb") as handle:
        records = pickle.load(handle)  # plain lists: no globals at all
    assert data.to_records() == [[[list(kind) for kind in visit] for visit in patient] for patient in records]


def test_knowledge_and_provenance(benchmark, safedrug_dir: Path) -> None:
    data, _ = benchmark
    knowledge = data.knowledge
    assert knowledge.substructure_mask.shape == (112, 442) and knowledge.substructure_mask.sum() == 997
    with (safedrug_dir / "atc3toSMILES.pkl").open("rb") as handle:
        smiles = pickle.load(handle)
    medications = data.vocabularies[MEDICATIONS]
    assert len(knowledge.smiles) == 112
    assert all(knowledge.smiles[i] == list(smiles[code]) for i, code in enumerate(medications.idx2word))
    files = data.provenance["files"]
    assert set(files) == {"records_final.pkl", "voc_final.pkl", "ddi_A_final.pkl", "ddi_mask_H.pkl",
                          "atc3toSMILES.pkl"}
    digest = hashlib.sha256((safedrug_dir / "ddi_A_final.pkl").read_bytes()).hexdigest()
    assert files["ddi_A_final.pkl"]["sha256"] == digest
    assert digest in knowledge.provenance["ddi_adjacency"]
    assert "ehr_adj_final.pkl" in data.provenance["not_used"]
    assert "ehr_adj_final.pkl" not in files
    assert data.provenance["dropped"]["visits_without_medications"] == 0
    assert data.provenance["checks"]["repeated_medications_codes"] == 0


# ----------------------------------------------------------------------------- small files
_VOCAB_SIZES = {"diag_voc": 6, "pro_voc": 4, "med_voc": 5}


def _voc_payload() -> dict[str, Any]:
    """``voc_final.pkl`` content: ``Voc`` objects of a class pickled by value, like SafeDrug's."""

    class Voc:
        def __init__(self) -> None:
            self.idx2word: dict[int, str] = {}
            self.word2idx: dict[str, int] = {}

        def add_sentence(self, sentence: list[str]) -> None:
            for word in sentence:
                if word not in self.word2idx:
                    self.idx2word[len(self.word2idx)] = word
                    self.word2idx[word] = len(self.word2idx)

    Voc.__module__, Voc.__qualname__ = "__main__", "Voc_by_value"
    payload = {}
    for key, size in _VOCAB_SIZES.items():
        voc = Voc()
        voc.add_sentence([f"{key[:1].upper()}{i}" for i in range(size)])
        payload[key] = voc
    return payload


def _ddi(n: int = 5) -> np.ndarray:
    matrix = np.zeros((n, n))
    matrix[0, 1] = matrix[1, 0] = matrix[2, 4] = matrix[4, 2] = 1.0
    return matrix


_RECORDS = [
    [[[0, 1], [0], [0, 1, 2]], [[2], [1, 2], [1, 3]]],
    [[[3, 4, 5], [3], [4]]],
    [[[1], [0], [0, 1]], [[0], [1], [2, 4]], [[5], [2], [3]]],
]


def _write(root: Path, **override: Any) -> Path:
    """Write a tiny valid benchmark (with ``override``: file name -> object, None = absent)."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {
        "records_final.pkl": _RECORDS,
        "voc_final.pkl": _voc_payload(),
        "ddi_A_final.pkl": _ddi(),
        "ddi_mask_H.pkl": np.eye(5, 7),
        "atc3toSMILES.pkl": {"M0": ["C", "CC"], "M2": ["O"], "ZZZ": ["N"]},
    }
    files.update(override)
    for name, payload in files.items():
        if payload is not None:
            (root / name).write_bytes(dill.dumps(payload, byref=False))
    return root


def test_small_files_load(tmp_path: Path) -> None:
    data = _load(_write(tmp_path))
    assert (data.n_patients, data.n_visits) == (3, 6)
    assert data.vocabularies[MEDICATIONS].idx2word == ["M0", "M1", "M2", "M3", "M4"]
    assert data.to_records() == _RECORDS
    assert data.knowledge.smiles == [["C", "CC"], [], ["O"], [], []]
    assert data.provenance["smiles"] == {"drugs_with_smiles": 2, "drugs_without_smiles": 3, "smiles": 3,
                                         "entries_not_in_vocabulary": 1}
    assert data.knowledge.substructure_mask.shape == (5, 7)
    assert data.knowledge.ddi_adjacency.dtype == np.float32 and data.knowledge.n_ddi_pairs == 2


def test_optional_files_may_be_absent_unless_named(tmp_path: Path) -> None:
    root = _write(tmp_path, **{"ddi_mask_H.pkl": None, "atc3toSMILES.pkl": None})
    data = _load(root)
    assert data.knowledge.substructure_mask is None and data.knowledge.smiles is None
    assert set(data.provenance["files"]) == {"records_final.pkl", "voc_final.pkl", "ddi_A_final.pkl"}
    with pytest.raises(FileNotFoundError, match=r"missing ddi_mask_H\.pkl \(substructure_mask, named explicitly\)"):
        _load(root, substructure_mask="ddi_mask_H.pkl")
    assert _load(_write(tmp_path / "b"), smiles=None).knowledge.smiles is None


def test_missing_required_files_are_named(tmp_path: Path) -> None:
    root = _write(tmp_path, **{"voc_final.pkl": None, "ddi_A_final.pkl": None})
    with pytest.raises(FileNotFoundError) as caught:
        _load(root)
    message = str(caught.value)
    assert "voc_final.pkl (vocabularies)" in message and "ddi_A_final.pkl (ddi_adjacency)" in message
    assert str(root) in message and "records_final.pkl" in message  # what is there
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        _load(tmp_path / "nowhere")
    with pytest.raises(ValidationError):
        SafeDrugPickleDataset.Params()  # root is required
    with pytest.raises(ValidationError):
        SafeDrugPickleDataset.Params(root=tmp_path, ehr_adjacency="ehr_adj_final.pkl")


def test_empty_medication_visits_are_counted_drops(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    records = [
        [[[0], [0], [0]], [[1], [1], []]],       # second visit has no medication
        [[[2], [2], []]],                        # the only visit: the patient disappears
        [[[3], [3], [1, 2]]],
    ]
    with caplog.at_level(logging.WARNING):
        data = _load(_write(tmp_path, **{"records_final.pkl": records}))
    assert (data.n_patients, data.n_visits) == (2, 2)
    assert data.patient_ids == ["0", "2"]  # file positions survive the drop
    dropped = data.provenance["dropped"]
    assert dropped["visits_without_medications"] == 2 and dropped["patients_without_visits"] == 1
    assert dropped["examples"] == [[0, 1], [1, 0]]
    assert data.to_records() == [[[[0], [0], [0]]], [[[3], [3], [1, 2]]]]
    assert "dropped 2 visits without medications" in caplog.text


def test_visits_without_diagnoses_are_kept_and_counted(tmp_path: Path) -> None:
    records = [[[[], [0], [0]], [[1, 1], [], [2]]]]
    data = _load(_write(tmp_path, **{"records_final.pkl": records}))
    assert data.n_visits == 2
    checks = data.provenance["checks"]
    assert checks["visits_without_diagnoses"] == 1 and checks["visits_without_procedures"] == 1
    assert checks["repeated_diagnoses_codes"] == 1


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"not": "a list"}, r"records_final\.pkl: expected a list of patients, got dict"),
        ([[[[0], [0]]]], r"records_final\.pkl: patient 0, visit 0: expected \[diagnoses, procedures, medications\]"),
        ([[[[0], [0], [0]]], "visit"], r"patient 1 is a str"),
        ([[[[0], 3, [0]]]], r"patient 0, visit 0: procedures is a int, expected a list"),
        ([[[[0], [0], [0]]], [[[0], [0], [0]], [[0], [0], [5]]]],
         r"records_final\.pkl: patient 1, visit 1: medications index 5 is outside the vocabulary \[0, 5\)"),
        ([[[[0, -1], [0], [0]]]], r"patient 0, visit 0: diagnoses index -1 is outside"),
        ([[[[0], [0], [0]], [[0], [0.5], [0]]]], r"patient 0, visit 1: procedures code 0.5 is not an integer"),
        ([[[["4019"], [0], [0]]]], r"patient 0, visit 0: diagnoses code '4019' is not an integer"),
        ([[[[0], [0], [0]]], [[[0], [0], [0]], [[0, 2**70], [0], [0]]]],
         r"patient 1, visit 1: diagnoses code 1180591620717411303424 does not fit a 64-bit integer"),
        ([[[[0], [0], [0, True]]]], r"patient 0, visit 0: medications code True is not an integer index "
                                    r"\(booleans are not codes\)"),
        ([[[[0], [0], [0]]], [[[0], [[1], [2]], [0]]]],
         r"patient 1, visit 0: procedures code \[1\] is not an integer index \(a nested list\)"),
        ([[[[0], [0], [0]], [[0], [0], [0], [1]]]],
         r"patient 0, visit 1: expected \[diagnoses, procedures, medications\], got 4 fields"),
    ],
)
def test_bad_records_name_file_patient_and_visit(tmp_path: Path, records: Any, message: str) -> None:
    with pytest.raises(SafeDrugFormatError, match=message):
        _load(_write(tmp_path, **{"records_final.pkl": records}))


def _asymmetric() -> np.ndarray:
    matrix = _ddi()
    matrix[3, 0] = 1.0
    return matrix


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("ddi_A_final.pkl", np.zeros((4, 4)), r"ddi_A_final\.pkl: DDI matrix has shape \(4, 4\), expected \(5, 5\)"),
        ("ddi_A_final.pkl", _asymmetric(), r"DDI matrix is not symmetric \(1 pairs, e\.g\. \[0, 3\]"),
        ("ddi_A_final.pkl", _ddi() * 2, r"DDI matrix must be 0/1, found 2\.0 at \[0, 1\]"),
        ("ddi_A_final.pkl", np.eye(5), r"nonzero diagonal \(drugs \[0, 1, 2, 3, 4\]\)"),
        ("ddi_A_final.pkl", [[0, 1], [1, 0]], r"ddi_A_final\.pkl: expected a 2-D numpy array, got list"),
        ("ddi_mask_H.pkl", np.ones((4, 3)), r"ddi_mask_H\.pkl: substructure mask has 4 rows, expected 5"),
        ("atc3toSMILES.pkl", ["C"], r"atc3toSMILES\.pkl: expected a dict"),
        ("atc3toSMILES.pkl", {"M0": [1]}, r"entry 'M0' must be a list of SMILES strings"),
        ("voc_final.pkl", {"diag_voc": None}, r"voc_final\.pkl: key 'pro_voc' missing|has no idx2word"),
        ("voc_final.pkl", [], r"voc_final\.pkl: expected a dict with keys diag_voc, pro_voc, med_voc"),
        ("voc_final.pkl", {"diag_voc": {"idx2word": {0: "D0", "1": "D1"}}},
         r"voc_final\.pkl: diag_voc\.idx2word keys must be integers, found '1' \(str\)"),
        ("voc_final.pkl", {"diag_voc": {"idx2word": {0: "D0", 1: 7}}},
         r"diag_voc\.idx2word holds non-string codes \(index 1: 7, a int\)"),
        ("voc_final.pkl", {"diag_voc": {"idx2word": ["D0", "D1"], "word2idx": ["D0", "D1"]}},
         r"voc_final\.pkl: diag_voc\.word2idx is a list, expected a dict code -> index"),
        ("voc_final.pkl", {"diag_voc": {"idx2word": ["D0"], "word2idx": {"D0": 0, 1: 1}}},
         r"diag_voc\.word2idx keys must be code strings, found 1 \(int\)"),
    ],
)
def test_bad_knowledge_and_vocabulary_files(tmp_path: Path, name: str, payload: Any, message: str) -> None:
    with pytest.raises(SafeDrugFormatError, match=message):
        _load(_write(tmp_path, **{name: payload}))


def test_inconsistent_vocabulary(tmp_path: Path) -> None:
    voc = _voc_payload()
    voc["med_voc"].word2idx["M0"] = 3
    with pytest.raises(SafeDrugFormatError, match=r"med_voc\.word2idx is not the inverse of idx2word"):
        _load(_write(tmp_path, **{"voc_final.pkl": voc}))
    voc = _voc_payload()
    voc["pro_voc"].idx2word = {0: "P0", 2: "P2"}
    with pytest.raises(SafeDrugFormatError, match=r"pro_voc\.idx2word keys are not 0\.\.1"):
        _load(_write(tmp_path / "b", **{"voc_final.pkl": voc}))


def test_malicious_file_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {marker}",)

    root = _write(tmp_path / "data")
    (root / "voc_final.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UnsafePickleError, match=r"refusing to load global '\w+\.system' from .*voc_final\.pkl"):
        _load(root)
    assert not marker.exists()


def test_numpy_integer_codes_are_accepted(tmp_path: Path) -> None:
    records = [[[[np.int64(1), 2], [np.int32(0)], [np.uint8(4)]]]]
    data = _load(_write(tmp_path, **{"records_final.pkl": records}))
    assert data.to_records() == [[[[1, 2], [0], [4]]]]


# ----------------------------------------------------------------------------- users' own files
@pytest.mark.parametrize("option", [None, "none", "null"])
def test_dataset_without_ddi_matrix(tmp_path: Path, option: str | None) -> None:
    data = _load(_write(tmp_path, **{"ddi_A_final.pkl": None}), ddi_adjacency=option)
    assert data.knowledge.ddi_adjacency is None and not data.knowledge.has_ddi
    assert data.knowledge.n_ddi_pairs is None
    assert "ddi_A_final.pkl" not in data.provenance["files"]
    assert "ddi_adjacency" not in data.knowledge.provenance
    stats = data.statistics()
    assert stats["ground_truth_ddi_rate"] is None and stats["n_drugs"] == 5
    with_ddi = _load(_write(tmp_path / "b"))
    assert data.fingerprint() != with_ddi.fingerprint()
    assert data.to_records() == with_ddi.to_records()


def test_other_file_names_are_listed_with_the_options_to_set(tmp_path: Path) -> None:
    root = _write(tmp_path, **{"records_final.pkl": None, "voc_final.pkl": None, "ddi_A_final.pkl": None,
                               "visits.pkl": _RECORDS, "vocab.pkl": _voc_payload()})
    with pytest.raises(FileNotFoundError) as caught:
        _load(root)
    message = str(caught.value)
    assert ("missing records_final.pkl (records), voc_final.pkl (vocabularies), "
            "ddi_A_final.pkl (ddi_adjacency)") in message
    assert "(.pkl files there: atc3toSMILES.pkl, ddi_mask_H.pkl, visits.pkl, vocab.pkl)" in message
    assert "set the dataset options records=<file>, vocabularies=<file>, ddi_adjacency=<file>" in message
    assert "ddi_adjacency=null when there is no DDI matrix" in message
    data = _load(root, records="visits.pkl", vocabularies="vocab.pkl", ddi_adjacency=None)
    assert data.n_visits == 6 and not data.knowledge.has_ddi


def test_vocabularies_pickled_by_reference_from_a_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pickle.dump`` of a script's own ``Voc`` instances (class named ``__main__.Voc``)."""
    def init(self: Any, words: list[str]) -> None:
        self.idx2word = dict(enumerate(words))
        self.word2idx = {word: index for index, word in enumerate(words)}

    voc_class = type("Voc", (), {"__module__": "__main__", "__qualname__": "Voc", "__init__": init})
    monkeypatch.setattr(__import__("__main__"), "Voc", voc_class, raising=False)
    payload = {key: voc_class([f"{key[0].upper()}{i}" for i in range(size)]) for key, size in _VOCAB_SIZES.items()}
    root = _write(tmp_path)
    (root / "voc_final.pkl").write_bytes(pickle.dumps(payload, protocol=4))
    data = _load(root)
    assert data.vocabularies[MEDICATIONS].idx2word == ["M0", "M1", "M2", "M3", "M4"]
    assert data.to_records() == _RECORDS


def test_pickle_element_budget_option(tmp_path: Path) -> None:
    root = _write(tmp_path)
    with pytest.raises(PickleTooLargeError) as caught:
        _load(root, max_pickle_elements=20)
    message = str(caught.value)
    assert f"refusing to load {root / 'voc_final.pkl'}: it expands to more than 20 elements" in message
    assert message.endswith("MEDTOOLKIT_PICKLE_MAX_ELEMENTS=<count> or safe_load(..., max_elements=<count>), "
                            "or the dataset option max_pickle_elements=<count>")
    # records_final.pkl: 3 patients + 6 visits + 18 code lists + 27 codes = 54 elements (the largest file)
    with pytest.raises(PickleTooLargeError, match=r"records_final\.pkl: it expands to more than 53 elements"):
        _load(root, max_pickle_elements=53)
    assert _load(root, max_pickle_elements=54).n_visits == 6


# ----------------------------------------------------------------------------- hostile review (issue 8)
_CLI_RUNNER = """
import contextlib, io, json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
from medtoolkit.cli import main
outcomes = {}
for name, root in json.loads(sys.stdin.read()).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["data", "info", "safedrug_pickle", "-o", "root=" + root])
    outcomes[name] = [code, err.getvalue()]
print(json.dumps(outcomes))
"""


def _deep_code_list(depth: int) -> bytes:
    """records ``[[[<depth nested lists>, [0], [0]]]]`` as raw opcodes (too deep for pickle.dumps)."""
    nested = pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1)
    visit = pickle.EMPTY_LIST + nested + pickle.APPEND + (pickle.EMPTY_LIST + pickle.BININT1 + b"\x00" + pickle.APPEND
                                                          + pickle.APPEND) * 2
    return pickle.PROTO + b"\x04" + pickle.EMPTY_LIST * 2 + visit + pickle.APPEND * 2 + pickle.STOP


def _colliding_records(count: int) -> bytes:
    """A dict of ``count`` integers that all hash to 0 (quadratic to insert)."""
    items = b"".join(pickle.LONG1 + bytes([10]) + (k * (2**61 - 1)).to_bytes(10, "little") + pickle.NONE
                     for k in range(1, count + 1))
    return pickle.PROTO + b"\x04" + pickle.EMPTY_DICT + pickle.MARK + items + pickle.SETITEMS + pickle.STOP


def test_hostile_dataset_files_end_in_one_error_line(tmp_path: Path) -> None:
    """Hostile files through the real CLI, in a child limited to 1.5 GB and 120 s: one line each."""
    roots: dict[str, Path] = {}

    def case(name: str, **files: Any) -> Path:
        roots[name] = root = _write(tmp_path / name, **{k: v for k, v in files.items() if not callable(v)})
        for file_name, make in files.items():
            if callable(make):
                make(root / file_name)
        return root

    def raw(data: bytes) -> Any:
        return lambda path: path.write_bytes(data)

    def remove_then(make: Any) -> Any:
        def run(path: Path) -> None:
            path.unlink()
            make(path)
        return run

    def sparse(path: Path) -> None:
        with path.open("wb") as handle:
            handle.write(pickle.PROTO + b"\x04")
            handle.truncate(2 * 10**9)

    voc_huge_key = {k: v for k, v in _voc_payload().items() if k != "med_voc"}
    voc_huge_key[10**5000] = 1
    case("huge-int-code", **{"records_final.pkl": [[[[10**5000], [0], [0]]]]})
    case("deep-code-list", **{"records_final.pkl": raw(_deep_code_list(200_000))})
    case("huge-int-vocabulary-key", **{"voc_final.pkl": voc_huge_key})
    case("range-idx2word", **{"voc_final.pkl": raw(pickle.dumps({"diag_voc": {"idx2word": range(10**12)}}))})
    case("complex-ddi", **{"ddi_A_final.pkl": _ddi().astype(complex)})
    case("ddi-directory", **{"ddi_A_final.pkl": remove_then(lambda p: p.mkdir())})
    case("ddi-fifo", **{"ddi_A_final.pkl": remove_then(os.mkfifo)})
    case("ddi-symlink-loop", **{"ddi_A_final.pkl": remove_then(lambda p: p.symlink_to(p))})
    case("records-sparse-2GB", **{"records_final.pkl": sparse})
    case("records-empty", **{"records_final.pkl": []})
    case("records-colliding-keys", **{"records_final.pkl": raw(_colliding_records(20_000))})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    for name in ("MEDTOOLKIT_PICKLE_MAX_ELEMENTS", "MEDTOOLKIT_PICKLE_MAX_BYTES", "MEDTOOLKIT_DEBUG"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", _CLI_RUNNER], input=json.dumps({k: str(v) for k, v in roots.items()}),
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = json.loads(done.stdout)
    r = {name: str(root) for name, root in roots.items()}
    expected = {
        "huge-int-code": "records_final.pkl: patient 0, visit 0: diagnoses code <an integer of 16,610 bits> "
                         "does not fit a 64-bit integer",
        "deep-code-list": f"refusing to load {r['deep-code-list']}/"
                          f"records_final.pkl: its containers nest deeper than 10000 levels (medication data nests "
                          f"a few levels)",
        "huge-int-vocabulary-key": "voc_final.pkl: key 'med_voc' missing (keys: 'diag_voc', 'pro_voc', "
                                   "<an integer of 16,610 bits>)",
        "range-idx2word": "voc_final.pkl: diag_voc has no idx2word mapping",
        "complex-ddi": "ddi_A_final.pkl: expected a numeric matrix, got dtype complex128",
        "ddi-directory": f"safedrug_pickle: {r['ddi-directory']}/ddi_A_final.pkl (ddi_adjacency) is a directory, "
                         f"expected a pickle file",
        "ddi-fifo": f"safedrug_pickle: {r['ddi-fifo']}/ddi_A_final.pkl (ddi_adjacency) is not a regular file "
                    f"(a device, FIFO or socket), expected a pickle file",
        "ddi-symlink-loop": f"safedrug_pickle: cannot use {r['ddi-symlink-loop']}/ddi_A_final.pkl (ddi_adjacency): "
                            f"Too many levels of symbolic links",
        "records-sparse-2GB": f"refusing to load {r['records-sparse-2GB']}/"
                              f"records_final.pkl: the file has 2000000000 bytes, more than the limit of 1073741824; "
                              f"if the file is genuine, raise it with the environment variable "
                              f"MEDTOOLKIT_PICKLE_MAX_BYTES=<bytes>",
        "records-empty": "records_final.pkl: no visit with medications in the file (0 patients): there is nothing "
                         "to load",
        "records-colliding-keys": f"refusing to load "
                                  f"{r['records-colliding-keys']}/records_final.pkl: it holds more than 5000 integers "
                                  f"of 2**55 or more (such integers can be chosen to collide in a dict and make "
                                  f"loading take hours); the file is hostile or not a medication dataset",
    }
    for name, line in expected.items():
        assert outcomes[name] == [1, f"error: {line}\n"], (name, outcomes[name])
