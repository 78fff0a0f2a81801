"""A safe on-disk cache for processed datasets (.npy + JSON, never pickles).

Layout of one cache entry (a directory named by the fingerprint)::

    a000.npy ...   one uncompressed numeric array each, written and read with allow_pickle=False
    meta.json      vocabularies, patient ids, knowledge (incl. SMILES lists), provenance,
                   and which array file holds which array
    manifest.json  format version + sha256 of meta.json and of every array file

The arrays are plain uncompressed ``.npy`` files so that a hit can **memory-map** them
(``mmap=True``, the default of :func:`load_ehr` and :func:`cached_build`): the codes and
offsets of a 10M-visit dataset (about 2 GB) then live once, in the operating system's page
cache, shared by every process that loads the entry (the ranks of a ``torchrun`` job), and
are paged in as batches read them instead of being copied into each process. Mapped arrays
are read-only (``EHRData`` only reads its columns); the small drug-knowledge matrices are
always read into memory; ``mmap=False`` reads everything into memory.

:func:`cached_build` keys entries by a SHA-256 of the input files (names, sizes and content,
hashed in 1 MB chunks), the options (as canonical JSON) and :data:`FORMAT_VERSION`; a missing
entry is built, and a corrupted, malformed (bad manifest) or symlinked one is rebuilt with a
``RuntimeWarning`` (shown on stderr): a bad entry never has to be deleted by hand. A symlinked
entry loses the link only, never the link's target.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medtoolkit.data.ehr import EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.vocab import Vocabulary

logger = logging.getLogger(__name__)

#: bump when the layout or the processing of any cached loader changes
#: (2: one uncompressed .npy per array, memory-mappable; 1 was a compressed arrays.npz)
FORMAT_VERSION = 2
_META, _MANIFEST = "meta.json", "manifest.json"
#: names of the array files of an entry (nothing else is ever opened as an array)
_ARRAY_FILE = re.compile(r"a[0-9]{3,6}\.npy")
#: .npy header readers by format version (literal parsing only, no pickles)
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_CHUNK = 1024 * 1024
#: a manifest is a few hundred bytes; anything far larger is not one
_MAX_MANIFEST_BYTES = 64 * 1024


class CacheError(ValueError):
    """A cache entry is missing a file, fails its checksum or cannot be decoded."""


def default_cache_dir() -> Path:
    """``$MEDTOOLKIT_CACHE_DIR`` or ``~/.cache/medtoolkit``.

    Without a home directory (no ``$HOME`` and a user id missing from the password
    database, as in some containers) it is ``<temporary directory>/medtoolkit-cache``.
    """
    configured = os.environ.get("MEDTOOLKIT_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    try:
        return Path.home() / ".cache" / "medtoolkit"
    except (RuntimeError, KeyError, OSError):  # "Could not determine home directory"
        return Path(tempfile.gettempdir()) / "medtoolkit-cache"


def file_digest(path: Path) -> str:
    """SHA-256 hex digest of a file's content, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    """Options -> canonical JSON-safe values (paths as strings, sets sorted)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def fingerprint(inputs: Sequence[Path], options: Mapping[str, Any]) -> str:
    """SHA-256 of input names, sizes and contents, the options and the format version."""
    digest = hashlib.sha256()
    digest.update(f"medtoolkit-cache-v{FORMAT_VERSION}\n".encode())
    # ordered by file name (then size and content), not by full path: the same tables in
    # another directory give the same key wherever that directory sorts
    entries = sorted((path.name, path.stat().st_size, file_digest(path)) for path in map(Path, inputs))
    for name, size, content in entries:
        digest.update(f"{name}\x1f{size}\x1f{content}\n".encode())
    digest.update(json.dumps(_jsonable(options), sort_keys=True).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------- save / load
def save_ehr(data: EHRData, directory: Path) -> None:
    """Write ``data`` to ``directory`` (created; existing entry files are replaced)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"visit_offsets": np.asarray(data.visit_offsets, dtype=np.int64)}
    for name in data.vocabularies:
        arrays[f"codes/{name}"] = np.asarray(data.codes[name], dtype=np.int32)
        arrays[f"code_offsets/{name}"] = np.asarray(data.code_offsets[name], dtype=np.int64)
    if data.hospital is not None:
        arrays["hospital"] = np.asarray(data.hospital, dtype=np.int32)
    if data.time is not None:
        arrays["time"] = np.asarray(data.time, dtype=np.float64)
    knowledge = data.knowledge
    if knowledge.has_ddi:  # absent: the dataset has no DDI matrix
        arrays["knowledge/ddi_adjacency"] = np.asarray(knowledge.ddi_adjacency, dtype=np.float32)
    for optional in ("ddi_types", "ddi_sign", "substructure_mask"):
        value = getattr(knowledge, optional)
        if value is not None:
            arrays[f"knowledge/{optional}"] = np.asarray(value)
    meta = {
        "name": data.name,
        "vocabularies": {name: vocab.to_json() for name, vocab in data.vocabularies.items()},
        "patient_ids": list(data.patient_ids),
        "smiles": knowledge.smiles,
        "knowledge_provenance": dict(knowledge.provenance),
        "provenance": _jsonable(data.provenance),
    }
    files: dict[str, str] = {}
    meta["arrays"] = {}
    for index, (name, array) in enumerate(arrays.items()):
        file_name = f"a{index:03d}.npy"
        with open(directory / file_name, "wb") as handle:
            np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
        meta["arrays"][name] = file_name
        files[file_name] = file_digest(directory / file_name)
    meta_path = directory / _META
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    files[_META] = file_digest(meta_path)
    manifest = {"format_version": FORMAT_VERSION, "files": files}
    (directory / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _read_manifest(directory: Path) -> dict[str, str]:
    """The checksums of a valid manifest: ``{file name: sha256 hex}``.

    Raises:
        CacheError: the manifest is a symlink, too large, not JSON, nested too deeply,
            or not ``{"format_version": int, "files": {name: str}}``.
    """
    path = directory / _MANIFEST
    try:
        if path.is_symlink():
            raise CacheError(f"{path}: is a symlink")
        if path.stat().st_size > _MAX_MANIFEST_BYTES:
            raise CacheError(f"{path}: unreadable manifest (larger than {_MAX_MANIFEST_BYTES} bytes)")
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except CacheError:
        raise
    except (OSError, ValueError, RecursionError) as error:
        raise CacheError(f"{path}: unreadable manifest ({type(error).__name__}: {error})") from None
    if not isinstance(manifest, dict):
        raise CacheError(f"{path}: unreadable manifest (expected an object, found {type(manifest).__name__})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CacheError(f"{path}: format version {manifest.get('format_version')!r} != {FORMAT_VERSION}")
    files = manifest.get("files")
    if (not isinstance(files, dict) or not isinstance(files.get(_META), str)
            or not all(isinstance(v, str) and (k == _META or _ARRAY_FILE.fullmatch(k)) for k, v in files.items())):
        raise CacheError(
            f"{path}: unreadable manifest ('files' must map {_META} and the array files aNNN.npy to checksums)"
        )
    return files


def _open_array(path: Path, mmap: bool) -> np.ndarray:
    """One ``.npy`` file, memory-mapped read-only (``mmap``) or read; never unpickles.

    Raises:
        CacheError: the header is unreadable, declares an object dtype, or the file is
            shorter or longer than the header's shape needs (a truncated entry).
    """
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in _HEADER_READERS:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = _HEADER_READERS[version](handle)
            data_start = handle.tell()
    except (OSError, ValueError, SyntaxError) as error:
        raise CacheError(f"{path}: unreadable array header ({type(error).__name__}: {error})") from None
    if dtype.hasobject:
        raise CacheError(f"{path}: holds Python objects (cache arrays are numeric)")
    expected = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise CacheError(f"{path}: {state} ({size} bytes, the {dtype} array of shape {shape} needs {expected})")
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def load_ehr(directory: Path, mmap: bool = True) -> EHRData:
    """Read an entry written by :func:`save_ehr`, verifying its checksums.

    Args:
        directory: the entry.
        mmap: memory-map the arrays read-only (see the module docstring); False reads
            them into memory (writable copies).

    Raises:
        CacheError: the entry or one of its files is a symlink, a file is missing, the
            manifest is malformed, a checksum differs, an array file is truncated, or the
            content does not decode.
    """
    directory = Path(directory)
    if directory.is_symlink():
        raise CacheError(f"{directory}: is a symlink (cache entries are plain directories)")
    files = _read_manifest(directory)
    for file_name in sorted(files):
        path = directory / file_name
        if path.is_symlink():
            raise CacheError(f"{path}: is a symlink")
        if not path.is_file():
            raise CacheError(f"{path}: missing")
        if file_digest(path) != files[file_name]:
            raise CacheError(f"{path}: checksum mismatch (corrupted cache entry)")
    try:
        meta = json.loads((directory / _META).read_text(encoding="utf-8"))
        listed = meta["arrays"]
        if not isinstance(listed, dict) or not all(isinstance(f, str) and f in files and f != _META
                                                   for f in listed.values()):
            raise CacheError(f"{directory / _META}: 'arrays' must name array files of the manifest")
        # the drug knowledge is small and models turn it into tensors: read, writable
        arrays = {str(name): _open_array(directory / file_name, mmap and not str(name).startswith("knowledge/"))
                  for name, file_name in listed.items()}
        vocabularies = {name: Vocabulary.from_json(v) for name, v in meta["vocabularies"].items()}
        knowledge = DrugKnowledge(
            ddi_adjacency=arrays.get("knowledge/ddi_adjacency"),
            ddi_types=arrays.get("knowledge/ddi_types"),
            ddi_sign=arrays.get("knowledge/ddi_sign"),
            smiles=meta.get("smiles"),
            substructure_mask=arrays.get("knowledge/substructure_mask"),
            provenance=dict(meta.get("knowledge_provenance", {})),
        )
        return EHRData(
            vocabularies=vocabularies,
            visit_offsets=arrays["visit_offsets"],
            codes={name: arrays[f"codes/{name}"] for name in vocabularies},
            code_offsets={name: arrays[f"code_offsets/{name}"] for name in vocabularies},
            patient_ids=[str(p) for p in meta["patient_ids"]],
            knowledge=knowledge,
            hospital=arrays.get("hospital"),
            time=arrays.get("time"),
            name=str(meta.get("name", "ehr")),
            provenance=dict(meta.get("provenance", {})),
        )
    except CacheError:
        raise
    except Exception as error:  # noqa: BLE001 - any decoding problem means "rebuild"
        raise CacheError(f"{directory}: cannot decode cache entry ({type(error).__name__}: {error})") from None


# ---------------------------------------------------------------------------- build with cache
def _remove_entry(entry: Path) -> None:
    """Delete a cache entry; a symlinked entry loses the link only, never its target."""
    if entry.is_symlink() or entry.is_file():
        entry.unlink(missing_ok=True)
    else:
        shutil.rmtree(entry, ignore_errors=True)


def cached_build(
    inputs: Sequence[Path],
    options: Mapping[str, Any],
    build: Callable[[], EHRData],
    cache_dir: Path | None,
    enabled: bool = True,
    mmap: bool = True,
) -> EHRData:
    """Return the cached dataset for (inputs, options), building and storing it when needed.

    Args:
        inputs: the raw files the build reads (their content is hashed).
        options: everything else that changes the result (loader name, parameters, versions).
        build: produces the dataset on a miss.
        cache_dir: root of the cache (None = :func:`default_cache_dir`).
        enabled: False builds without reading or writing the cache.
        mmap: on a hit, memory-map the arrays read-only (:func:`load_ehr`); a miss returns
            the freshly built (in-memory) dataset either way.

    Returns:
        The dataset; ``provenance["cache"]`` records ``hit``, ``fingerprint``, ``path`` and,
        on a hit, ``mmap``.
    """
    if not enabled:
        data = build()
        data.provenance["cache"] = {"hit": False, "enabled": False}
        return data
    key = fingerprint(inputs, options)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = root / key
    if entry.is_symlink() or (entry / _MANIFEST).is_file() or (entry / _MANIFEST).is_symlink():
        started = time.perf_counter()
        try:
            data = load_ehr(entry, mmap=mmap)
        except CacheError as error:
            warnings.warn(f"dataset cache entry is corrupt, rebuilding: {error}", RuntimeWarning, stacklevel=2)
            _remove_entry(entry)
        else:
            data.provenance["cache"] = {
                "hit": True, "fingerprint": key, "path": str(entry), "mmap": mmap,
                "load_seconds": round(time.perf_counter() - started, 4),
            }
            return data
    data = build()
    data.provenance["fingerprint"] = key
    staging: Path | None = None
    try:
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"{root} is not a directory")
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=root))
        save_ehr(data, staging)
        _remove_entry(entry)
        os.replace(staging, entry)
    except OSError as error:  # an unwritable cache must not stop the run
        reason = str(error) if error.errno is None else f"{error.filename or root}: {error.strerror}"
        logger.warning("could not write dataset cache %s: %s", entry, reason)
        if staging is not None:  # never the entry: it may be another process's finished one
            shutil.rmtree(staging, ignore_errors=True)
    data.provenance["cache"] = {"hit": False, "fingerprint": key, "path": str(entry)}
    return data
