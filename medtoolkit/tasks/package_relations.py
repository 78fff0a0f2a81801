"""The drug relations a package task uses: signed from a typed DDI directory, or the DDI matrix.

:func:`resolve_relations_directory` checks the ``task.relations`` path when the schema is
built (a missing directory is a clear error before training); :func:`task_relations` reads it
for a schema's drugs, or falls back to the schema's unsigned DDI matrix (antagonism only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medtoolkit.components.schema import DataSchema
from medtoolkit.knowledge.ddi_types import fallback_relation_matrix, relations_from_directory

__all__ = ["ANTAGONISM_ONLY_NOTE", "resolve_relations_directory", "task_relations"]

#: the report note when no typed file is given
ANTAGONISM_ONLY_NOTE = ("antagonism only: no typed DDI directory (task.relations) was given, so the DDI matrix's "
                        "pairs are antagonism edges and no synergy is known")


def resolve_relations_directory(directory: str | Path) -> Path:
    """``task.relations`` as an absolute directory (a relative path resolves against the current directory).

    Raises:
        FileNotFoundError: the directory does not exist (the message names ``task.relations``).
    """
    path = Path(directory).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.is_dir():
        raise FileNotFoundError(f"task.relations: directory {str(directory)!r} not found (resolved to {path}); "
                                f"it must hold Drugbank.txt, Interaction_information.csv and drug_smiles.csv")
    return path


def task_relations(
    directory: str | Path | None, schema: DataSchema,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """The relations of ``schema``'s drugs.

    Args:
        directory: a DeepDDI-format directory (``task.relations``) or None.
        schema: gives the drug codes, their SMILES and the DDI matrix.

    Returns:
        ``(relation [n, n] int8 | None, covered [n] bool | None, report)``. With a
        directory: :func:`~medtoolkit.knowledge.ddi_types.relations_from_directory` (report
        ``source`` "typed_ddi", ``coverage`` the matched share of the vocabulary, sign
        counts). Without: the DDI matrix as antagonism edges with every drug covered (report
        ``source`` "ddi_adjacency", ``coverage`` 1.0), or ``(None, None, report)`` without a
        DDI matrix (``source`` "none"); the note then says "antagonism only".
    """
    if directory is not None:
        folder = resolve_relations_directory(directory)
        codes = list(schema.drug_codes)
        if len(codes) != schema.n_drugs:
            raise ValueError(f"task.relations needs the drug codes of the schema ({schema.n_drugs} drugs, "
                             f"{len(codes)} codes)")
        smiles = schema.smiles or ()
        atc_smiles = {code: list(per_drug) for code, per_drug in zip(codes, smiles) if per_drug}
        relation, covered, report = relations_from_directory(folder, codes, atc_smiles)
        return relation, covered, {**report, "source": "typed_ddi"}
    if schema.ddi_adjacency is None:
        return None, None, {"source": "none", "coverage": 0.0,
                            "note": "no typed DDI directory and no DDI matrix: no drug relations are known"}
    relation, report = fallback_relation_matrix(schema.ddi_adjacency)
    covered = np.ones(schema.n_drugs, dtype=bool)
    return relation, covered, {**report, "coverage": 1.0, "note": ANTAGONISM_ONLY_NOTE}
