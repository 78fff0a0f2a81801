"""``safedrug_pickle``: the field's processed MIMIC-III pickles (GAMENet / SafeDrug layout).

Reads ``records_final.pkl``, ``voc_final.pkl``, ``ddi_A_final.pkl`` and, when present,
``ddi_mask_H.pkl`` and ``atc3toSMILES.pkl`` with the restricted unpickler of
:mod:`medtoolkit.data.safe_pickle` (no pickled code is ever executed), validates them and
returns :class:`~medtoolkit.data.ehr.EHRData`.

Files of other names are named with the ``records`` / ``vocabularies`` / ``ddi_adjacency``
options; ``ddi_adjacency=None`` (``null`` / ``none``) loads data without a DDI matrix (DDI
metrics are then not available). Every file goes through the unpickler's size limits
(``max_pickle_elements`` raises the element budget for genuinely large files).

``ehr_adj_final.pkl`` is deliberately **not** read: the original authors built it from all
records, test patients included, so using it leaks test prescriptions into training. The
task rebuilds the co-occurrence graph from its training split.
"""

from __future__ import annotations

import stat
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from medtoolkit.components.base import Dataset
from medtoolkit.components.params import Params as BaseParams
from medtoolkit.data.cache import file_digest
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.safe_pickle import PickleBudgetError, safe_load
from medtoolkit.data.vocab import Vocabulary
from medtoolkit.yaml_limits import short_repr

logger = logging.getLogger(__name__)

#: ``voc_final.pkl`` key -> vocabulary name, in the records' visit layout order
_VOCAB_KEYS = (("diag_voc", DIAGNOSES), ("pro_voc", PROCEDURES), ("med_voc", MEDICATIONS))
_LEAKY_FILE = "ehr_adj_final.pkl"


class SafeDrugFormatError(ValueError):
    """A processed pickle has the wrong structure or content (message names file and place)."""


class SafeDrugPickleDataset(Dataset):
    """The GAMENet/SafeDrug processed pickles as :class:`EHRData`.

    Visits keep file order; ``patient_ids`` are the patients' positions in
    ``records_final.pkl`` (as strings, also for patients after a dropped one). Visits with
    an empty medication list are dropped, counted in ``provenance["dropped"]`` and logged.
    ``ehr_adj_final.pkl`` is never read (it is built from all records, test included).
    """

    class Params(BaseParams):
        """Where the processed files are.

        Attributes:
            root: directory holding the files.
            records: visits file (list of patients of ``[diag, proc, med]`` visits).
            vocabularies: ``voc_final.pkl`` (``diag_voc`` / ``pro_voc`` / ``med_voc``).
            ddi_adjacency: ``[n_drugs, n_drugs]`` 0/1 DDI matrix; None (``null`` / ``none``)
                when the dataset has no DDI matrix: DDI metrics are then reported as not
                available and components that need the matrix refuse to build.
            substructure_mask: ``[n_drugs, n_substructures]`` mask; loaded when present
                (an explicitly named file must exist); None skips it.
            smiles: ATC3 -> SMILES list; loaded when present (same rule); None skips it.
            max_pickle_elements: element budget of each file (see
                :func:`medtoolkit.data.safe_pickle.element_budget`); None: the default
                ``max(10_000_000, 1000 * file bytes)`` or ``MEDTOOLKIT_PICKLE_MAX_ELEMENTS``.
        """

        root: Path = Field(description="directory holding the processed pickles")
        records: str = Field("records_final.pkl", description="visits file: patients of [diag, proc, med] visits")
        vocabularies: str = Field("voc_final.pkl", description="vocabulary file (diag_voc / pro_voc / med_voc)")
        ddi_adjacency: str | None = Field(
            "ddi_A_final.pkl", description="[n_drugs, n_drugs] 0/1 DDI matrix file (null: the data has none)"
        )
        substructure_mask: str | None = Field(
            default="ddi_mask_H.pkl", description="drug-to-substructure mask file (loaded when present; None skips)"
        )
        smiles: str | None = Field(
            default="atc3toSMILES.pkl", description="ATC3 -> SMILES file (loaded when present; None skips)"
        )
        max_pickle_elements: int | None = Field(
            default=None, ge=1,
            description="largest element count a file may expand to (None: max(1e7, 1000 x file bytes))",
        )

        @field_validator("ddi_adjacency", mode="before")
        @classmethod
        def _none_names(cls, value: Any) -> Any:
            """``none`` / ``null`` (as typed on a command line) mean no DDI matrix."""
            if isinstance(value, str) and value.strip().lower() in ("none", "null", ""):
                return None
            return value

    params: Params
    _OPTIONAL: ClassVar[tuple[str, ...]] = ("substructure_mask", "smiles")

    @classmethod
    def knowledge_provided(cls, params: BaseParams) -> frozenset[str] | None:
        """``"ddi"`` unless ``ddi_adjacency`` is null (no DDI matrix); ``"smiles"`` and
        ``"substructures"`` (the mask) when their file will be loaded: named explicitly
        (load fails without it), or left at its default and present under ``root`` (a file
        check, nothing is read). Molecule graphs follow from ``"smiles"`` with rdkit
        (:mod:`medtoolkit.components.requirements`).
        """
        provided = {"ddi"} if getattr(params, "ddi_adjacency", None) is not None else set()
        root = Path(getattr(params, "root", ".")).expanduser()
        for role, name in (("smiles", "smiles"), ("substructure_mask", "substructures")):
            file_name = getattr(params, role, None)
            if file_name is not None and (role in params.model_fields_set or (root / file_name).is_file()):
                provided.add(name)
        return frozenset(provided)

    def load(self, progress: bool = True) -> EHRData:
        """Read, validate and convert the files.

        Args:
            progress: log each file as it is read (INFO level).

        Returns:
            the dataset: vocabularies ``diagnoses`` / ``procedures`` / ``medications``,
            :class:`DrugKnowledge` (DDI adjacency, SMILES aligned to the medication
            vocabulary, substructure mask) and provenance (files with sha256, drops).

        Raises:
            FileNotFoundError: the directory or a required file is missing.
            SafeDrugFormatError: a file has the wrong structure or out-of-range content.
            medtoolkit.data.safe_pickle.UnsafePickleError: a file asks for unsafe globals.
        """
        paths = self._locate()
        files: dict[str, dict[str, str]] = {}

        def read(role: str) -> Any:
            path = paths[role]
            if progress:
                logger.info("safedrug_pickle: reading %s", path)
            try:  # size and kind of file are checked before anything else reads it
                payload = safe_load(path, max_elements=self.params.max_pickle_elements)
            except PickleBudgetError as error:
                raise PickleBudgetError(f"{error}, or the dataset option max_pickle_elements=<count>") from None
            files[path.name] = {"role": role, "path": str(path), "sha256": file_digest(path)}
            return payload

        vocabularies = _read_vocabularies(read("vocabularies"), paths["vocabularies"].name)
        sizes = [len(vocabularies[name]) for _, name in _VOCAB_KEYS]
        columns, visit_counts, dropped, checks = _read_records(read("records"), paths["records"].name, sizes)
        n_drugs = sizes[2]
        adjacency = None
        if "ddi_adjacency" in paths:
            adjacency = _read_adjacency(read("ddi_adjacency"), paths["ddi_adjacency"].name, n_drugs)
        else:
            logger.info("safedrug_pickle: no DDI matrix (ddi_adjacency is none): DDI metrics will be n/a")
        mask = None
        if "substructure_mask" in paths:
            mask = _read_mask(read("substructure_mask"), paths["substructure_mask"].name, n_drugs)
        smiles = None
        smiles_report: dict[str, int] = {}
        if "smiles" in paths:
            smiles, smiles_report = _read_smiles(
                read("smiles"), paths["smiles"].name, vocabularies[MEDICATIONS]
            )
        knowledge_provenance = {
            role: f"{paths[role].name} sha256={files[paths[role].name]['sha256']}"
            for role in ("ddi_adjacency", "substructure_mask", "smiles")
            if role in paths
        }

        kept_patients = np.flatnonzero(visit_counts > 0)
        if not len(kept_patients):
            raise SafeDrugFormatError(
                f"{paths['records'].name}: no visit with medications in the file ({len(visit_counts)} "
                f"patients): there is nothing to load"
            )
        dropped["patients_without_visits"] = int(len(visit_counts) - len(kept_patients))
        _report_drops(dropped, paths["records"].name)
        provenance: dict[str, object] = {
            "source": "safedrug_pickle",
            "root": str(self.params.root),
            "files": files,
            "not_used": {
                _LEAKY_FILE: "built from all records (test included): a leak; the task rebuilds "
                "co-occurrence from its training split"
            },
            "dropped": dropped,
            "checks": checks,
            "smiles": smiles_report,
            "patients_in_file": int(len(visit_counts)),
        }
        offsets = np.zeros(len(kept_patients) + 1, dtype=np.int64)
        np.cumsum(visit_counts[kept_patients], out=offsets[1:])
        return EHRData(
            vocabularies=vocabularies,
            visit_offsets=offsets,
            codes={name: columns[name][0] for name in vocabularies},
            code_offsets={name: columns[name][1] for name in vocabularies},
            patient_ids=[str(int(p)) for p in kept_patients],
            knowledge=DrugKnowledge(
                ddi_adjacency=adjacency,
                smiles=smiles,
                substructure_mask=mask,
                provenance=knowledge_provenance,
            ),
            name=f"safedrug_pickle:{Path(self.params.root).name}",
            provenance=provenance,
        )

    # ------------------------------------------------------------------ files
    def _locate(self) -> dict[str, Path]:
        root = Path(self.params.root).expanduser()
        try:
            is_dir = root.is_dir()
        except OSError as error:  # a name too long, a symlink loop, permission denied
            raise FileNotFoundError(
                f"safedrug_pickle: cannot use root {short_repr(str(root))}: {error.strerror or error}"
            ) from None
        if not is_dir:
            raise FileNotFoundError(
                f"safedrug_pickle: root {root} is not a directory (expected the processed "
                f"files {self.params.records}, {self.params.vocabularies}, {self.params.ddi_adjacency})"
            )
        paths: dict[str, Path] = {}
        missing: list[str] = []
        for role in ("records", "vocabularies", "ddi_adjacency"):
            if getattr(self.params, role) is None:  # only ddi_adjacency may be None
                continue
            path = root / getattr(self.params, role)
            if path.is_file():
                paths[role] = path
            else:
                _refuse_odd_file(path, role)
                missing.append(f"{path.name} ({role})")
        for role in self._OPTIONAL:
            file_name = getattr(self.params, role)
            if file_name is None:
                continue
            path = root / file_name
            if path.is_file():
                paths[role] = path
                continue
            _refuse_odd_file(path, role)
            if role in self.params.model_fields_set:
                missing.append(f"{path.name} ({role}, named explicitly)")
        if missing:
            present = sorted(p.name for p in root.iterdir() if p.suffix == ".pkl")
            hint = ""
            if present:
                hint = (
                    "; if your files have other names, set the dataset options records=<file>, "
                    "vocabularies=<file>, ddi_adjacency=<file> (ddi_adjacency=null when there is no "
                    "DDI matrix), substructure_mask=<file|null>, smiles=<file|null>"
                )
            raise FileNotFoundError(
                f"safedrug_pickle: missing {', '.join(missing)} in {root} "
                f"(.pkl files there: {', '.join(present) or 'none'}){hint}"
            )
        return paths


# ---------------------------------------------------------------------- validation helpers
def _refuse_odd_file(path: Path, role: str) -> None:
    """Name a path that exists but is no regular file (directory, FIFO, device, symlink loop)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise SafeDrugFormatError(f"safedrug_pickle: {path} ({role}) is a broken symbolic link") from None
        return
    except OSError as error:  # a symlink loop, a path too long, permission denied
        raise SafeDrugFormatError(
            f"safedrug_pickle: cannot use {path} ({role}): {error.strerror or error}"
        ) from None
    kind = "a directory" if path.is_dir() else "not a regular file (a device, FIFO or socket)"
    if not stat.S_ISREG(info.st_mode):
        raise SafeDrugFormatError(f"safedrug_pickle: {path} ({role}) is {kind}, expected a pickle file")


def _read_vocabularies(payload: Any, file_name: str) -> dict[str, Vocabulary]:
    """``voc_final.pkl`` (dict of objects with ``idx2word``/``word2idx``) -> vocabularies."""
    if not isinstance(payload, Mapping):
        raise SafeDrugFormatError(
            f"{file_name}: expected a dict with keys diag_voc, pro_voc, med_voc, got {type(payload).__name__}"
        )
    vocabularies: dict[str, Vocabulary] = {}
    for key, name in _VOCAB_KEYS:
        if key not in payload:
            keys = sorted(short_repr(k, 60) for k in list(payload)[:20])
            more = ", ..." if len(payload) > 20 else ""
            raise SafeDrugFormatError(f"{file_name}: key {key!r} missing (keys: {', '.join(keys)}{more})")
        item = payload[key]
        idx2word = getattr(item, "idx2word", None)
        word2idx = getattr(item, "word2idx", None)
        if idx2word is None and isinstance(item, Mapping):
            idx2word, word2idx = item.get("idx2word"), item.get("word2idx")
        if isinstance(idx2word, (list, tuple)):
            idx2word = dict(enumerate(idx2word))
        if not isinstance(idx2word, Mapping):
            raise SafeDrugFormatError(f"{file_name}: {key} has no idx2word mapping")
        n = len(idx2word)
        odd_key = next((k for k in idx2word if not _is_index_type(type(k))), None)
        if odd_key is not None:
            raise SafeDrugFormatError(
                f"{file_name}: {key}.idx2word keys must be integers, found {short_repr(odd_key)} "
                f"({type(odd_key).__name__})"
            )
        if sorted(idx2word) != list(range(n)):
            raise SafeDrugFormatError(f"{file_name}: {key}.idx2word keys are not 0..{n - 1}")
        codes = [idx2word[i] for i in range(n)]
        odd_code = next((i for i, code in enumerate(codes) if not isinstance(code, str)), None)
        if odd_code is not None:
            raise SafeDrugFormatError(
                f"{file_name}: {key}.idx2word holds non-string codes (index {odd_code}: "
                f"{short_repr(codes[odd_code])}, a {type(codes[odd_code]).__name__})"
            )
        if word2idx is not None and not isinstance(word2idx, Mapping):
            raise SafeDrugFormatError(
                f"{file_name}: {key}.word2idx is a {type(word2idx).__name__}, expected a dict code -> index"
            )
        odd_word = next((w for w in (word2idx or {}) if not isinstance(w, str)), None)
        if odd_word is not None:
            raise SafeDrugFormatError(
                f"{file_name}: {key}.word2idx keys must be code strings, found {short_repr(odd_word)} "
                f"({type(odd_word).__name__})"
            )
        if word2idx is not None and dict(word2idx) != {code: i for i, code in enumerate(codes)}:
            raise SafeDrugFormatError(f"{file_name}: {key}.word2idx is not the inverse of idx2word")
        try:
            vocabularies[name] = Vocabulary(codes, name=name)
        except ValueError as error:
            raise SafeDrugFormatError(f"{file_name}: {key}: {error}") from None
    return vocabularies


def _read_records(
    records: Any, file_name: str, sizes: Sequence[int]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, dict[str, Any], dict[str, int]]:
    """Flatten and check ``records_final.pkl``; drop visits without medications.

    Returns:
        per vocabulary ``(codes [n_codes] int32, code_offsets [n_visits + 1] int64)`` over the
        kept visits, ``[n_patients_in_file]`` kept-visit counts, the drop report, and counts
        of kept oddities (visits without diagnoses/procedures, repeated codes).
    """
    if not isinstance(records, list):
        raise SafeDrugFormatError(f"{file_name}: expected a list of patients, got {type(records).__name__}")
    names = [name for _, name in _VOCAB_KEYS]
    flat: list[list[int]] = [[], [], []]
    lengths: list[list[int]] = [[], [], []]
    patient_of_visit: list[int] = []
    visit_in_patient: list[int] = []
    for p, patient in enumerate(records):
        if not isinstance(patient, (list, tuple)):
            raise SafeDrugFormatError(
                f"{file_name}: patient {p} is a {type(patient).__name__}, expected a list of visits"
            )
        for t, visit in enumerate(patient):
            if not isinstance(visit, (list, tuple)) or len(visit) != 3:
                got = f"{len(visit)} fields" if isinstance(visit, (list, tuple)) else f"a {type(visit).__name__}"
                raise SafeDrugFormatError(
                    f"{file_name}: patient {p}, visit {t}: expected [diagnoses, procedures, medications], "
                    f"got {got}"
                )
            for k in range(3):
                codes = visit[k]
                if not isinstance(codes, (list, tuple)):
                    raise SafeDrugFormatError(
                        f"{file_name}: patient {p}, visit {t}: {names[k]} is a "
                        f"{type(codes).__name__}, expected a list"
                    )
                flat[k].extend(codes)
                lengths[k].append(len(codes))
            patient_of_visit.append(p)
            visit_in_patient.append(t)
    where = np.asarray(patient_of_visit, dtype=np.int64), np.asarray(visit_in_patient, dtype=np.int64)
    arrays = []
    for k, name in enumerate(names):
        offsets = np.zeros(len(lengths[k]) + 1, dtype=np.int64)
        np.cumsum(lengths[k], out=offsets[1:])
        values = _as_index_array(flat[k], offsets, where, file_name, name)
        bad = np.flatnonzero((values < 0) | (values >= sizes[k]))
        if len(bad):
            visit = int(np.searchsorted(offsets, bad[0], side="right") - 1)
            raise SafeDrugFormatError(
                f"{file_name}: patient {where[0][visit]}, visit {where[1][visit]}: {name} index "
                f"{int(values[bad[0]])} is outside the vocabulary [0, {sizes[k]}) "
                f"({len(bad)} such codes in the file)"
            )
        arrays.append((values, offsets))

    med_lengths = np.diff(arrays[2][1])
    keep = med_lengths > 0
    empty = np.flatnonzero(~keep)
    dropped: dict[str, Any] = {
        "visits_without_medications": int(len(empty)),
        "examples": [[int(where[0][i]), int(where[1][i])] for i in empty[:10]],
    }
    checks: dict[str, int] = {}
    for k, name in enumerate(names[:2]):  # kept as they are, but counted
        checks[f"visits_without_{name}"] = int(np.sum(np.diff(arrays[k][1])[keep] == 0))
    for k, name in enumerate(names):  # repeated codes within a visit: kept, but counted
        values, offsets = arrays[k]
        keys = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets)) * sizes[k] + values
        checks[f"repeated_{name}_codes"] = int(len(keys) - len(np.unique(keys)))
    columns = {name: _select_visits(values, offsets, keep) for name, (values, offsets) in zip(names, arrays)}
    visit_counts = np.bincount(where[0][keep], minlength=len(records)).astype(np.int64)
    return columns, visit_counts, dropped, checks


def _is_index_type(kind: type) -> bool:
    """Python / numpy integers, but not booleans (``True`` is not a code)."""
    return issubclass(kind, (int, np.integer)) and not issubclass(kind, (bool, np.bool_))


def _as_index_array(
    values: list[Any], offsets: np.ndarray, where: tuple[np.ndarray, np.ndarray], file_name: str, name: str
) -> np.ndarray:
    """``values`` as int64, or an error naming the first visit holding a non-integer.

    Booleans, nested lists, strings and floats are refused, as are integers outside int64.
    """
    def fail(first: int, problem: str) -> SafeDrugFormatError:
        visit = int(np.searchsorted(offsets, first, side="right") - 1)
        return SafeDrugFormatError(
            f"{file_name}: patient {where[0][visit]}, visit {where[1][visit]}: {name} code "
            f"{short_repr(values[first])} {problem}"
        )

    bad_kinds = {kind for kind in set(map(type, values)) if not _is_index_type(kind)}
    if bad_kinds:
        first = next(i for i, v in enumerate(values) if type(v) in bad_kinds)
        kind = type(values[first])
        detail = {bool: " (booleans are not codes)", list: " (a nested list)", tuple: " (a nested tuple)"}
        raise fail(first, f"is not an integer index{detail.get(kind, '')}")
    if not values:
        return np.zeros(0, dtype=np.int64)
    try:
        return np.asarray(values, dtype=np.int64)
    except OverflowError:
        first = next(i for i, v in enumerate(values) if not -(2**63) <= int(v) < 2**63)
        raise fail(first, "does not fit a 64-bit integer") from None


def _select_visits(values: np.ndarray, offsets: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the codes of visits where ``keep`` is True (vectorised)."""
    lengths = np.diff(offsets)
    code_keep = np.repeat(keep, lengths)
    new_offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(lengths[keep], out=new_offsets[1:])
    return values[code_keep].astype(np.int32), new_offsets


def _report_drops(dropped: Mapping[str, Any], file_name: str) -> None:
    if dropped["visits_without_medications"] or dropped["patients_without_visits"]:
        logger.warning(
            "safedrug_pickle: dropped %d visits without medications from %s (patient, visit: %s%s); "
            "%d patients were left without visits and dropped",
            dropped["visits_without_medications"], file_name,
            dropped["examples"], " ..." if dropped["visits_without_medications"] > 10 else "",
            dropped["patients_without_visits"],
        )


def _read_adjacency(payload: Any, file_name: str, n_drugs: int) -> np.ndarray:
    """``ddi_A_final.pkl`` -> ``[n_drugs, n_drugs]`` float32 symmetric 0/1 with zero diagonal."""
    matrix = _as_matrix(payload, file_name)
    if matrix.shape != (n_drugs, n_drugs):
        raise SafeDrugFormatError(
            f"{file_name}: DDI matrix has shape {matrix.shape}, expected ({n_drugs}, {n_drugs}) "
            f"for the {n_drugs} medications of the vocabulary"
        )
    _check_binary(matrix, file_name, "DDI matrix")
    asymmetric = np.argwhere(matrix != matrix.T)
    if len(asymmetric):
        i, j = asymmetric[0]
        raise SafeDrugFormatError(
            f"{file_name}: DDI matrix is not symmetric ({len(asymmetric) // 2} pairs, e.g. "
            f"[{i}, {j}] = {matrix[i, j]} but [{j}, {i}] = {matrix[j, i]})"
        )
    if np.any(np.diag(matrix) != 0):
        raise SafeDrugFormatError(
            f"{file_name}: DDI matrix has a nonzero diagonal "
            f"(drugs {np.flatnonzero(np.diag(matrix)).tolist()[:10]})"
        )
    return matrix.astype(np.float32)


def _read_mask(payload: Any, file_name: str, n_drugs: int) -> np.ndarray:
    """``ddi_mask_H.pkl`` -> ``[n_drugs, n_substructures]`` float32 0/1."""
    matrix = _as_matrix(payload, file_name)
    if matrix.shape[0] != n_drugs:
        raise SafeDrugFormatError(
            f"{file_name}: substructure mask has {matrix.shape[0]} rows, expected {n_drugs} (one per medication)"
        )
    _check_binary(matrix, file_name, "substructure mask")
    return matrix.astype(np.float32)


def _as_matrix(payload: Any, file_name: str) -> np.ndarray:
    if not isinstance(payload, np.ndarray) or payload.ndim != 2:
        shape = getattr(payload, "shape", None)
        got = f"{type(payload).__name__} {shape or ''}".rstrip()
        raise SafeDrugFormatError(f"{file_name}: expected a 2-D numpy array, got {got}")
    if not (np.issubdtype(payload.dtype, np.integer) or np.issubdtype(payload.dtype, np.floating)
            or payload.dtype == bool):
        raise SafeDrugFormatError(f"{file_name}: expected a numeric matrix, got dtype {payload.dtype}")
    return payload


def _check_binary(matrix: np.ndarray, file_name: str, what: str) -> None:
    bad = np.argwhere(~np.isin(matrix, (0, 1)))
    if len(bad):
        i, j = bad[0]
        raise SafeDrugFormatError(f"{file_name}: {what} must be 0/1, found {matrix[i, j]} at [{i}, {j}]")


def _read_smiles(
    payload: Any, file_name: str, medications: Vocabulary
) -> tuple[list[list[str]], dict[str, int]]:
    """``atc3toSMILES.pkl`` (ATC3 -> list of SMILES) -> per-drug lists aligned to ``medications``."""
    if not isinstance(payload, Mapping):
        raise SafeDrugFormatError(
            f"{file_name}: expected a dict ATC3 -> list of SMILES, got {type(payload).__name__}"
        )
    smiles: list[list[str]] = []
    for code in medications.idx2word:
        entry = payload.get(code, [])
        if isinstance(entry, str):
            entry = [entry]
        if not isinstance(entry, (list, tuple, set)) or not all(isinstance(s, str) for s in entry):
            raise SafeDrugFormatError(f"{file_name}: entry {short_repr(code)} must be a list of SMILES strings")
        smiles.append(list(entry))
    report = {
        "drugs_with_smiles": sum(1 for s in smiles if s),
        "drugs_without_smiles": sum(1 for s in smiles if not s),
        "smiles": sum(len(s) for s in smiles),
        "entries_not_in_vocabulary": sum(1 for code in payload if code not in medications),
    }
    return smiles, report
