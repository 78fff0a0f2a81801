"""A safe on-disk cache for processed datasets (npz + JSON, never pickles).

Layout of one cache entry (a directory named by the fingerprint)::

    arrays.npz     numeric arrays, written and read with allow_pickle=False
    meta.json      vocabularies, patient ids, knowledge (incl. SMILES lists), provenance
    manifest.json  format version + sha256 of arrays.npz and meta.json

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
FORMAT_VERSION = 1
_ARRAYS, _META, _MANIFEST = "arrays.npz", "meta.json", "manifest.json"
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
    arrays_path, meta_path = directory / _ARRAYS, directory / _META
    with open(arrays_path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    manifest = {
        "format_version": FORMAT_VERSION,
        "files": {_ARRAYS: file_digest(arrays_path), _META: file_digest(meta_path)},
    }
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
    if not isinstance(files, dict) or not all(isinstance(files.get(name), str) for name in (_ARRAYS, _META)):
        raise CacheError(f"{path}: unreadable manifest ('files' must map {_ARRAYS} and {_META} to checksums)")
    return files


def load_ehr(directory: Path) -> EHRData:
    """Read an entry written by :func:`save_ehr`, verifying its checksums.

    Raises:
        CacheError: the entry or one of its files is a symlink, a file is missing, the
            manifest is malformed, a checksum differs, or the content does not decode.
    """
    directory = Path(directory)
    if directory.is_symlink():
        raise CacheError(f"{directory}: is a symlink (cache entries are plain directories)")
    files = _read_manifest(directory)
    for file_name in (_ARRAYS, _META):
        path = directory / file_name
        if path.is_symlink():
            raise CacheError(f"{path}: is a symlink")
        if not path.is_file():
            raise CacheError(f"{path}: missing")
        if file_digest(path) != files[file_name]:
            raise CacheError(f"{path}: checksum mismatch (corrupted cache entry)")
    try:
        meta = json.loads((directory / _META).read_text(encoding="utf-8"))
        with np.load(directory / _ARRAYS, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
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
) -> EHRData:
    """Return the cached dataset for (inputs, options), building and storing it when needed.

    Args:
        inputs: the raw files the build reads (their content is hashed).
        options: everything else that changes the result (loader name, parameters, versions).
        build: produces the dataset on a miss.
        cache_dir: root of the cache (None = :func:`default_cache_dir`).
        enabled: False builds without reading or writing the cache.

    Returns:
        The dataset; ``provenance["cache"]`` records ``hit``, ``fingerprint`` and ``path``.
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
            data = load_ehr(entry)
        except CacheError as error:
            warnings.warn(f"dataset cache entry is corrupt, rebuilding: {error}", RuntimeWarning, stacklevel=2)
            _remove_entry(entry)
        else:
            data.provenance["cache"] = {
                "hit": True, "fingerprint": key, "path": str(entry),
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
