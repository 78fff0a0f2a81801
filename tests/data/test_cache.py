"""Dataset cache: .npy + JSON round trip, memory-mapped loads, fingerprints, corruption detected and rebuilt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from medtoolkit.data.cache import CacheError, cached_build, default_cache_dir, fingerprint, load_ehr, save_ehr
from medtoolkit.data.ehr import EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.vocab import Vocabulary


def make_data() -> EHRData:
    vocabularies = {
        "diagnoses": Vocabulary(["d1", "d2"], "diagnoses"),
        "procedures": Vocabulary(["p1"], "procedures"),
        "medications": Vocabulary(["A01A", "B01A", "C01A"], "medications"),
    }
    adjacency = np.zeros((3, 3), dtype=np.float32)
    adjacency[0, 2] = adjacency[2, 0] = 1
    knowledge = DrugKnowledge(
        ddi_adjacency=adjacency, smiles=[["C"], [], ["CC", "O"]],
        substructure_mask=np.eye(3, 4, dtype=np.float32), provenance={"ddi": "test"},
    )
    records = [[[[0], [0], [0, 2]], [[1], [0], [1]]], [[[0, 1], [0], [2]]]]
    return EHRData.from_records(records, vocabularies, knowledge, patient_ids=["7", "9"], time=[1.0, 2.5, np.nan],
                                hospital=[1, 1, 2], name="tiny", provenance={"report": {"drops": []}, "n": 1})


def test_round_trip_without_pickles(tmp_path: Path) -> None:
    data = make_data()
    save_ehr(data, tmp_path)
    again = load_ehr(tmp_path)
    assert again.fingerprint() == data.fingerprint()
    assert again.patient_ids == ["7", "9"] and again.name == "tiny"
    assert again.knowledge.smiles == [["C"], [], ["CC", "O"]]
    assert np.array_equal(again.knowledge.substructure_mask, data.knowledge.substructure_mask)
    assert np.isnan(again.time[2]) and again.hospital.tolist() == [1, 1, 2]
    assert again.provenance == {"report": {"drops": []}, "n": 1}
    names = {p.name for p in tmp_path.iterdir()}
    assert {"meta.json", "manifest.json"} < names
    arrays = sorted(names - {"meta.json", "manifest.json"})
    assert arrays and all(re.fullmatch(r"a\d{3}\.npy", name) for name in arrays)
    assert all(np.load(tmp_path / name, allow_pickle=False).dtype != object for name in arrays)
    assert sorted(json.loads((tmp_path / "meta.json").read_text())["arrays"].values()) == arrays


def array_file(entry: Path, name: str) -> str:
    """The file of one array of an entry (``meta.json`` lists them)."""
    return json.loads((entry / "meta.json").read_text())["arrays"][name]


def test_corruption_is_detected(tmp_path: Path) -> None:
    save_ehr(make_data(), tmp_path)
    meta = tmp_path / "meta.json"
    meta.write_text(meta.read_text().replace('"tiny"', '"tinx"'))
    with pytest.raises(CacheError, match="checksum mismatch"):
        load_ehr(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CacheError, match="unreadable manifest"):
        load_ehr(tmp_path)


def test_cached_build_hits_and_rebuilds(tmp_path: Path) -> None:
    source = tmp_path / "input.csv"
    source.write_text("a,b\n1,2\n")
    cache = tmp_path / "cache"
    calls: list[int] = []

    def build() -> EHRData:
        calls.append(1)
        return make_data()

    first = cached_build([source], {"k": 1}, build, cache)
    assert first.provenance["cache"]["hit"] is False and len(calls) == 1
    second = cached_build([source], {"k": 1}, build, cache)
    assert second.provenance["cache"]["hit"] is True and len(calls) == 1
    assert second.fingerprint() == first.fingerprint()
    cached_build([source], {"k": 2}, build, cache)  # changed option
    assert len(calls) == 2
    source.write_text("a,b\n1,3\n")  # same size, new content
    cached_build([source], {"k": 2}, build, cache)
    assert len(calls) == 3
    entry = Path(cached_build([source], {"k": 2}, build, cache).provenance["cache"]["path"])
    assert len(calls) == 3
    arrays = entry / array_file(entry, "codes/medications")
    arrays.write_bytes(arrays.read_bytes()[:-10])  # truncated payload
    with pytest.warns(RuntimeWarning, match="corrupt, rebuilding"):
        rebuilt = cached_build([source], {"k": 2}, build, cache)
    assert len(calls) == 4 and rebuilt.provenance["cache"]["hit"] is False
    assert cached_build([source], {"k": 2}, build, cache).provenance["cache"]["hit"] is True
    disabled = cached_build([source], {"k": 2}, build, cache, enabled=False)
    assert disabled.provenance["cache"] == {"hit": False, "enabled": False} and len(calls) == 5
    assert json.loads((entry / "manifest.json").read_text())["format_version"] == 2


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDTOOLKIT_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("MEDTOOLKIT_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "medtoolkit"


# ---------------------------------------------------------------------------- malformed and symlinked entries
def entry_of(cache: Path) -> Path:
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    return entry


@pytest.fixture()
def cached(tmp_path: Path) -> tuple[Path, Path, list[int]]:
    """A source file, a cache holding its entry, and the list of builds so far."""
    source = tmp_path / "input.csv"
    source.write_text("a,b\n1,2\n")
    cache = tmp_path / "cache"
    calls: list[int] = []
    cached_build([source], {"k": 1}, lambda: calls.append(1) or make_data(), cache)
    return source, cache, calls


def rebuild(source: Path, cache: Path, calls: list[int]) -> EHRData:
    return cached_build([source], {"k": 1}, lambda: calls.append(1) or make_data(), cache)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("{not json", "unreadable manifest (JSONDecodeError"),
        ("[1, 2]", "unreadable manifest (expected an object, found list)"),
        ('{"format_version": 2, "files": ["a000.npy"]}', "'files' must map meta.json and the array files"),
        ('{"format_version": 2, "files": {"a000.npy": 1, "meta.json": null}}', "'files' must map"),
        ('{"format_version": 2, "files": {"../a000.npy": "0", "meta.json": "0"}}', "'files' must map"),
        ('{"format_version": 2, "files": {"a000.npy": "0"}}', "'files' must map"),
        ('{"format_version": "2", "files": {}}', "format version '2' != 2"),
        ('{"format_version": 1, "files": {"arrays.npz": "0", "meta.json": "0"}}', "format version 1 != 2"),
        ("[" * 10_000 + "]" * 10_000, "unreadable manifest (RecursionError"),
        (" " * (64 * 1024 + 1) + "{}", "unreadable manifest (larger than 65536 bytes)"),
    ],
    ids=["invalid-json", "not-an-object", "files-a-list", "checksums-not-strings", "path-outside",
         "no-meta", "version-a-string", "old-npz-layout", "deep-nesting", "huge"],
)
def test_malformed_manifest_is_rebuilt_with_a_warning(
    cached: tuple[Path, Path, list[int]], manifest: str, message: str
) -> None:
    source, cache, calls = cached
    (entry_of(cache) / "manifest.json").write_text(manifest)
    with pytest.raises(CacheError, match=re.escape(message)):
        load_ehr(entry_of(cache))
    with pytest.warns(RuntimeWarning, match=r"dataset cache entry is corrupt, rebuilding: .*manifest\.json"):
        rebuilt = rebuild(source, cache, calls)
    assert len(calls) == 2 and rebuilt.provenance["cache"]["hit"] is False
    assert rebuild(source, cache, calls).provenance["cache"]["hit"] is True  # healed: no rebuild every run
    assert len(calls) == 2


def test_symlinked_entry_is_replaced_and_its_target_kept(cached: tuple[Path, Path, list[int]], tmp_path: Path) -> None:
    source, cache, calls = cached
    entry = entry_of(cache)
    elsewhere = tmp_path / "elsewhere"
    entry.rename(elsewhere)
    entry.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(CacheError, match="is a symlink"):
        load_ehr(entry)
    with pytest.warns(RuntimeWarning, match="is a symlink"):
        rebuild(source, cache, calls)
    assert len(calls) == 2 and not entry.is_symlink() and entry.is_dir()
    assert {"manifest.json", "meta.json", "a000.npy"} <= {p.name for p in elsewhere.iterdir()}
    assert rebuild(source, cache, calls).provenance["cache"]["hit"] is True and len(calls) == 2


@pytest.mark.parametrize("name", ["a000.npy", "meta.json", "manifest.json"])
def test_symlinked_file_in_an_entry_is_rebuilt(
    cached: tuple[Path, Path, list[int]], tmp_path: Path, name: str
) -> None:
    source, cache, calls = cached
    target = entry_of(cache) / name
    outside = tmp_path / f"outside-{name}"
    outside.write_bytes(target.read_bytes())  # same content: only the link is wrong
    target.unlink()
    target.symlink_to(outside)
    with pytest.warns(RuntimeWarning, match=rf"{re.escape(name)}: is a symlink"):
        rebuild(source, cache, calls)
    assert len(calls) == 2 and not (entry_of(cache) / name).is_symlink()
    assert outside.exists()  # the link's target is left alone


def test_round_trip_without_ddi_matrix(tmp_path: Path) -> None:
    data = make_data()
    data.knowledge.ddi_adjacency = None
    save_ehr(data, tmp_path)
    assert "knowledge/ddi_adjacency" not in json.loads((tmp_path / "meta.json").read_text())["arrays"]
    again = load_ehr(tmp_path)
    assert again.knowledge.ddi_adjacency is None and again.fingerprint() == data.fingerprint()


def test_a_cache_directory_that_is_a_file_warns_once_per_run_and_builds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "input.csv"
    source.write_text("a,b\n1,2\n")
    cache = tmp_path / "cache"
    cache.write_text("not a directory")
    with caplog.at_level("WARNING"):
        data = cached_build([source], {"k": 1}, make_data, cache)
    assert data.provenance["cache"]["hit"] is False
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [f"{cache} is not a directory"]
    assert cache.read_text() == "not a directory"


def test_a_failed_cache_write_never_removes_an_entry_it_did_not_stage(
    cached: tuple[Path, Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If staging fails, the (possibly concurrent, finished) entry directory is left alone."""
    import tempfile

    source, cache, calls = cached
    entry = entry_of(cache)
    (entry / "manifest.json").unlink()  # a half-written entry: rebuilt, not loaded
    (entry / "keep").write_text("x")

    def no_space(*args: object, **kwargs: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkdtemp", no_space)
    rebuild(source, cache, calls)
    assert (entry / "keep").exists()


def test_default_cache_dir_without_a_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """No $HOME and no passwd entry (some containers): a cache in the temporary directory, not a crash."""
    import tempfile

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("MEDTOOLKIT_CACHE_DIR", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert default_cache_dir() == Path(tempfile.gettempdir()) / "medtoolkit-cache"


def test_fingerprint_does_not_depend_on_where_the_tables_are(tmp_path: Path) -> None:
    # a directory that sorts before the other inputs and one that sorts after give one key
    shared = tmp_path / "m" / "shared.csv"
    shared.parent.mkdir()
    shared.write_text("s\n", encoding="utf-8")
    keys = []
    for folder in ("a_first", "z_last"):
        table = tmp_path / folder / "table.csv"
        table.parent.mkdir()
        table.write_text("x\n1\n", encoding="utf-8")
        keys.append(fingerprint([table, shared], {"k": 1}))
    assert keys[0] == keys[1]
    table.write_text("x\n2\n", encoding="utf-8")
    assert fingerprint([table, shared], {"k": 1}) != keys[0]


# ---------------------------------------------------------------------------- memory-mapped loads
@pytest.mark.filterwarnings("error")  # e.g. torch's "non-writable array" warning: batches copy what they read
def test_a_hit_is_memory_mapped_read_only_and_batches_like_the_original(tmp_path: Path) -> None:
    from medtoolkit.data.batching import make_batch

    data = make_data()
    save_ehr(data, tmp_path)
    mapped = load_ehr(tmp_path)
    columns = [mapped.visit_offsets, *mapped.codes.values(), *mapped.code_offsets.values(), mapped.hospital,
               mapped.time]
    assert all(isinstance(c, np.memmap) and not c.flags.writeable for c in columns)
    knowledge = [mapped.knowledge.ddi_adjacency, mapped.knowledge.substructure_mask]  # small: read, writable
    assert all(not isinstance(c, np.memmap) and c.flags.writeable for c in knowledge)
    with pytest.raises(ValueError, match="read-only"):
        mapped.codes["medications"][0] = 1
    assert mapped.fingerprint() == data.fingerprint()
    assert mapped.statistics() == data.statistics()
    visits = np.arange(3)
    assert np.array_equal(mapped.multi_hot("medications", visits), data.multi_hot("medications", visits))
    patients = np.array([1, 0])
    expected, got = make_batch(data, patients), make_batch(mapped, patients)
    for field in ("medications", "visit_mask", "patient_index", "hospital"):
        assert torch.equal(getattr(got, field), getattr(expected, field)), field
    assert got.codes.keys() == expected.codes.keys()
    assert all(torch.equal(got.codes[name], expected.codes[name]) for name in expected.codes)
    in_memory = load_ehr(tmp_path, mmap=False)
    assert not isinstance(in_memory.codes["medications"], np.memmap) and in_memory.codes["medications"].flags.writeable
    assert in_memory.fingerprint() == data.fingerprint()


def test_cached_build_memory_maps_hits_unless_told_not_to(cached: tuple[Path, Path, list[int]]) -> None:
    source, cache, calls = cached
    hit = rebuild(source, cache, calls)
    assert hit.provenance["cache"]["hit"] is True and hit.provenance["cache"]["mmap"] is True
    assert isinstance(hit.codes["diagnoses"], np.memmap)
    copy = cached_build([source], {"k": 1}, lambda: calls.append(1) or make_data(), cache, mmap=False)
    assert copy.provenance["cache"]["mmap"] is False and not isinstance(copy.codes["diagnoses"], np.memmap)
    assert len(calls) == 1


def _reseal(entry: Path, file_name: str) -> None:
    """Rewrite the manifest checksum of ``file_name``: a consistently written, truncated entry."""
    from medtoolkit.data.cache import file_digest

    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["files"][file_name] = file_digest(entry / file_name)
    (entry / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("mmap", [True, False])
def test_a_truncated_array_file_is_a_clear_error(tmp_path: Path, mmap: bool) -> None:
    save_ehr(make_data(), tmp_path)
    name = array_file(tmp_path, "codes/diagnoses")
    path = tmp_path / name
    content = path.read_bytes()
    path.write_bytes(content[:-4])
    with pytest.raises(CacheError, match=rf"{name}: checksum mismatch"):
        load_ehr(tmp_path, mmap=mmap)
    _reseal(tmp_path, name)  # the checksum agrees: the size check still refuses it
    truncated = rf"{name}: truncated \(\d+ bytes, the int32 array of shape \(4,\) needs 144\)"
    with pytest.raises(CacheError, match=truncated):
        load_ehr(tmp_path, mmap=mmap)
    path.write_bytes(content + b"\0" * 8)
    _reseal(tmp_path, name)
    with pytest.raises(CacheError, match="longer than its header says"):
        load_ehr(tmp_path, mmap=mmap)
    path.write_bytes(content[:20])  # not even a header
    _reseal(tmp_path, name)
    with pytest.raises(CacheError, match=rf"{name}: unreadable array header"):
        load_ehr(tmp_path, mmap=mmap)


def test_an_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    save_ehr(make_data(), tmp_path)
    name = array_file(tmp_path, "hospital")
    np.save(tmp_path / name, np.array([{"x": 1}, None, 3], dtype=object), allow_pickle=True)
    _reseal(tmp_path, name)
    with pytest.raises(CacheError, match="holds Python objects"):
        load_ehr(tmp_path)


def test_meta_may_only_name_array_files_of_the_manifest(tmp_path: Path) -> None:
    save_ehr(make_data(), tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["arrays"]["hospital"] = "../elsewhere.npy"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    _reseal(tmp_path, "meta.json")
    with pytest.raises(CacheError, match="'arrays' must name array files of the manifest"):
        load_ehr(tmp_path)


def test_a_truncated_entry_is_rebuilt_by_cached_build(cached: tuple[Path, Path, list[int]]) -> None:
    source, cache, calls = cached
    entry = entry_of(cache)
    name = array_file(entry, "visit_offsets")
    (entry / name).write_bytes((entry / name).read_bytes()[:-8])
    _reseal(entry, name)
    with pytest.warns(RuntimeWarning, match=rf"corrupt, rebuilding: .*{name}: truncated"):
        rebuilt = rebuild(source, cache, calls)
    assert len(calls) == 2 and rebuilt.provenance["cache"]["hit"] is False
    assert rebuild(source, cache, calls).provenance["cache"]["hit"] is True
