"""Typed and signed drug-drug interactions from a user-supplied DeepDDI/DrugBank-format file.

The DeepDDI DrugBank set (``Drugbank.txt``: ``drug1 drug2 Label``, 86 interaction types, with
``Interaction_information.csv`` holding one sentence template per type and ``drug_smiles.csv``
the SMILES of the DrugBank ids) is DrugBank-derived and licensed CC BY-NC 4.0: it is **never
vendored and never required**. When it is present (``../shared/data/drug-knowledge/ddi-types/``
or anywhere the user points to), this module turns it into a directed relation matrix over our
ATC vocabulary:

1. :func:`read_type_pairs` reads the typed pairs (strict, one error per bad line);
2. :func:`read_templates` reads the type templates and :func:`template_sign` signs each one with
   the written rules below (:class:`Relation`);
3. :func:`match_drugs_by_smiles` maps DrugBank ids to ATC codes through canonical SMILES (rdkit,
   optional extra ``medtoolkit[chem]``) and reports the coverage;
4. :func:`signed_relation_matrix` aggregates the signed DrugBank pairs onto ATC pairs.

Without the file, :func:`fallback_relation_matrix` turns the shipped (unsigned) DDI adjacency
into antagonism edges only, and its report says so. Without the templates, every typed pair is
:attr:`Relation.UNKNOWN`.

**Direction.** ``R[i, j]`` is the effect of drug ``i`` (``#Drug1``) on drug ``j`` (``#Drug2``),
as in DPR (the paper's ``R_ij``, "the direction is from d_i to d_j"). The paper codes unknown as
``-1``; here it is ``3`` (:attr:`Relation.UNKNOWN`) so the matrix fits ``int8`` values 0..3 that
index an embedding table.

**Template-to-sign rules.** Synergy means the combination *enhances the intended effect* of
``#Drug2``; antagonism means it *reduces that effect or adds harm* (DPR section 3: "Synergism
means the combination of two drugs can lead to enhanced drug effect, and Antagonism is the
opposite"). :func:`template_sign` lower-cases the template and applies the first matching rule:

.. list-table::
   :header-rows: 1
   :widths: 4 36 12 48

   * - #
     - template wording (lower-cased)
     - sign
     - example (DeepDDI type)
   * - 1
     - ``risk`` ... ``increase`` (risk or severity of an outcome raised)
     - ANTAGONISM
     - "The risk or severity of adverse effects can be increased ..." (49)
   * - 2
     - ``worsening`` or ``adverse effects``
     - ANTAGONISM
     - "... increase in the absorption ... potentially a worsening of adverse effects" (18)
   * - 3
     - loss of efficacy: ``decrease in efficacy``, ``reduction in efficacy``, ``loss in efficacy``,
       ``decrease effectiveness``, ``therapeutic efficacy`` ... ``decreased``
     - ANTAGONISM
     - "The therapeutic efficacy of #Drug2 can be decreased ..." (70)
   * - 4
     - ``therapeutic efficacy`` ... ``increased``
     - SYNERGY
     - "The therapeutic efficacy of #Drug2 can be increased ..." (8)
   * - 5
     - ``increase the X activities`` with X an *adverse* activity (:data:`ADVERSE_ACTIVITIES`)
     - ANTAGONISM
     - "#Drug1 may increase the cardiotoxic activities of #Drug2" (15)
   * - 6
     - ``decrease the X activities`` with X adverse (less harm, not an enhanced effect)
     - UNKNOWN
     - "#Drug1 may decrease the cardiotoxic activities of #Drug2" (58)
   * - 7
     - ``increase the X activities`` with X any other (therapeutic) activity
     - SYNERGY
     - "#Drug1 may increase the antihypertensive activities of #Drug2" (10; DPR table 2)
   * - 8
     - ``decrease the X activities`` with X any other (therapeutic) activity
     - ANTAGONISM
     - "#Drug1 may decrease the hypoglycemic activities of #Drug2" (DPR table 2)
   * - 9
     - exposure of #Drug2 *lowered*: absorption, bioavailability, serum concentration/level
       decreased or reduced; metabolism or excretion increased; protein binding increased
     - ANTAGONISM
     - "The metabolism of #Drug2 can be increased ..." (4)
   * - 10
     - exposure of #Drug2 *raised*: the opposite directions (metabolism or excretion decreased,
       protein binding decreased, serum concentration increased, ...)
     - ``exposure_up`` (UNKNOWN by default)
     - "The metabolism of #Drug2 can be decreased ..." (47)
   * - 11
     - anything else
     - UNKNOWN
     -

Rule 10 is the deliberate choice: a higher exposure strengthens both the effect and the
toxicity, so its sign is not stated by the template and defaults to UNKNOWN. DPR's case study
labels "drug 1 may decrease the excretion rate of drug 2" as synergism; pass
``exposure_up=Relation.SYNERGY`` to follow the paper there. Rules 1-4 win over the
pharmacokinetic wording because they state the outcome (type 18 raises exposure but says
"worsening of adverse effects", type 67 lowers it and says "decrease in efficacy").
Adverse activities (rule 5) are matched as words in X, so ``antihypertensive`` is not
``hypertensive`` and ``orthostatic hypotensive`` is adverse while ``hypotensive`` is not.
Judgement calls, kept deliberately: "increase the anticoagulant / antiplatelet / sedative /
hypotensive activities" is SYNERGY (the effect is enhanced, as DPR defines it; the bleeding and
hypotension risks have their own "risk or severity" templates, which are ANTAGONISM), while
"increase the CNS depressant / anticholinergic / serotonergic activities" is ANTAGONISM.
On DeepDDI's 86 templates the rules give 64 ANTAGONISM, 15 SYNERGY and 7 UNKNOWN types.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ADVERSE_ACTIVITIES", "MAX_FILE_BYTES", "RELATION_FILES", "Relation", "TypePairs",
           "fallback_relation_matrix", "match_drugs_by_smiles", "read_drug_smiles", "read_templates",
           "read_type_pairs", "relations_from_directory", "signed_relation_matrix", "template_sign",
           "template_signs"]

#: the files :func:`relations_from_directory` reads: typed pairs, type templates, DrugBank SMILES
RELATION_FILES = ("Drugbank.txt", "Interaction_information.csv", "drug_smiles.csv")

MAX_FILE_BYTES = 200 * 1024 * 1024
"""Files larger than this (200 MiB) are refused by the readers of this module."""

ADVERSE_ACTIVITIES: tuple[str, ...] = (
    "toxic", "neurotoxic", "cardiotoxic", "hepatotoxic", "nephrotoxic", "ototoxic", "adverse",
    "arrhythmogenic", "qtc-prolonging", "myopathic", "rhabdomyolysis", "myelosuppressive",
    "ulcerogenic", "thrombogenic", "photosensitizing", "bronchoconstrictory", "constipating",
    "fluid retaining", "hyperkalemic", "hypokalemic", "hyponatremic", "hypercalcemic",
    "hypocalcemic", "hyperglycemic", "neuroexcitatory", "orthostatic", "respiratory depressant",
    "serotonergic", "tachycardic", "bradycardic", "atrioventricular blocking", "anticholinergic",
    "hypertensive", "central nervous system depressant", "cns depressant",
)
"""Activity words (rule 5 of the module table) whose increase is harm, matched as whole words."""

_ADVERSE_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in ADVERSE_ACTIVITIES) + r")\b")
_ACTIVITY_RE = re.compile(r"\b(increase|decrease)s?\s+the\s+(.+?)\s+activities\b")
_EXPOSURE_RE = re.compile(r"\b(absorption|bioavailability|metabolism|excretion|protein binding|"
                          r"serum concentration|serum level)\b")
_DIRECTION_RE = re.compile(r"\b(increase[sd]?|decrease[sd]?|reduced?|reduction|lower|higher|raised?)\b")
_INVERTED_EXPOSURE = {"metabolism", "excretion", "protein binding"}
_LOSS_OF_EFFICACY = ("decrease in efficacy", "reduction in efficacy", "loss in efficacy", "loss of efficacy",
                     "decrease effectiveness", "decrease the effectiveness")


class Relation(enum.IntEnum):
    """Directed relation of drug ``i`` on drug ``j`` (values of the relation matrix)."""

    NONE = 0
    """No recorded interaction (for drugs outside the typed file: not known, not absent)."""
    SYNERGY = 1
    """The combination enhances the effect of drug ``j``."""
    ANTAGONISM = 2
    """The combination reduces the effect of drug ``j`` or adds harm."""
    UNKNOWN = 3
    """An interaction is recorded but its sign is not stated (or no templates were given)."""


@dataclass(frozen=True)
class TypePairs:
    """Directed typed DDI pairs read by :func:`read_type_pairs`.

    Attributes:
        drug1: ``[P]`` object array of DrugBank ids (``#Drug1``, the acting drug).
        drug2: ``[P]`` object array of DrugBank ids (``#Drug2``, the affected drug).
        labels: ``[P]`` int16 interaction types (1-based, joining the templates' ``Label``).
        source: the file read.
    """

    drug1: np.ndarray
    drug2: np.ndarray
    labels: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _check_size(path: Path, max_bytes: int) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"typed DDI file not found: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path}: {size / 2**20:.1f} MiB exceeds the {max_bytes / 2**20:.0f} MiB limit of "
                         "the typed-DDI readers; refusing to read it (pass max_bytes to raise the limit)")


def _scan_bad_line(path: Path, id_re: re.Pattern[str] | None, max_label: int | None) -> str:
    """Slow exact pass used only when the fast read found a problem: the first bad line, explained."""
    with path.open(encoding="utf-8") as handle:
        next(handle)
        for number, line in enumerate(handle, start=2):
            fields = line.split()
            if not fields:
                return f"{path}, line {number}: empty line"
            if len(fields) != 3:
                return f"{path}, line {number}: expected 3 fields (drug1 drug2 Label), found {len(fields)}: {line.strip()!r}"
            drug1, drug2, label = fields
            for name, value in (("drug1", drug1), ("drug2", drug2)):
                if id_re is not None and not id_re.fullmatch(value):
                    return f"{path}, line {number}: {name} {value!r} is not a DrugBank id ({id_re.pattern})"
            if not label.isdigit() or int(label) < 1:
                return f"{path}, line {number}: Label {label!r} is not a positive integer"
            if max_label is not None and int(label) > max_label:
                return f"{path}, line {number}: Label {label} exceeds max_label={max_label}"
    return f"{path}: malformed (no single bad line found)"


def read_type_pairs(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES, id_pattern: str | None = r"DB\d+",
                    max_label: int | None = None) -> TypePairs:
    """Read a DeepDDI/DrugBank-format typed DDI file (``Drugbank.txt``).

    The first line must be the header ``drug1 drug2 Label`` (tab- or space-separated; the label
    column name is case-insensitive). Every following line must hold exactly three fields: two
    drug ids and a positive integer type. Nothing is dropped silently: the first bad line is
    refused with a :class:`ValueError` naming the file and the line number. Pairs are kept
    directed and in file order (duplicates are kept). Plain text only, never pickles.

    Args:
        path: the file (192,284 pairs over 1,710 DrugBank ids and 86 types for DeepDDI's).
        max_bytes: refuse larger files (default 200 MiB).
        id_pattern: regular expression each drug id must match in full (DrugBank ids); None
            accepts any non-empty token.
        max_label: when given, labels above it are refused (86 for DeepDDI).

    Returns:
        the pairs, ``P`` rows.

    Raises:
        FileNotFoundError: no such file.
        ValueError: too large, wrong header, or a bad line (with its number).
    """
    path = Path(path)
    _check_size(path, max_bytes)
    with path.open(encoding="utf-8") as handle:
        header = handle.readline().split()
    if [h.lower() for h in header] != ["drug1", "drug2", "label"]:
        raise ValueError(f"{path}, line 1: expected the header 'drug1 drug2 Label', found {' '.join(header)!r}")
    id_re = re.compile(id_pattern) if id_pattern is not None else None
    try:
        frame = pd.read_csv(path, sep=r"\s+", header=None, skiprows=1, names=["drug1", "drug2", "label"],
                            dtype=str, skip_blank_lines=False, na_filter=True, engine="c")
    except (pd.errors.ParserError, ValueError) as error:
        raise ValueError(_scan_bad_line(path, id_re, max_label)) from error
    ok = frame.notna().all(axis=1).all()
    if ok:
        labels_text = frame["label"]
        ok = bool(labels_text.str.fullmatch(r"\d+").all())
    if ok and id_re is not None:
        ok = bool(frame["drug1"].str.fullmatch(id_re.pattern).all() and frame["drug2"].str.fullmatch(id_re.pattern).all())
    if ok:
        labels = frame["label"].astype(np.int64).to_numpy()
        ok = bool((labels >= 1).all()) and (max_label is None or bool((labels <= max_label).all()))
    if not ok:
        raise ValueError(_scan_bad_line(path, id_re, max_label))
    if len(frame) == 0:
        raise ValueError(f"{path}: no pairs after the header")
    return TypePairs(drug1=frame["drug1"].to_numpy(dtype=object), drug2=frame["drug2"].to_numpy(dtype=object),
                     labels=labels.astype(np.int16), source=str(path))


_LABEL_COLUMNS = ("label", "interaction type", "interaction_type")
_TEXT_COLUMNS = ("description", "template")


def read_templates(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> dict[int, str]:
    """Read the type templates (``Interaction_information.csv`` / ``id2rel.txt`` of DeepDDI).

    A CSV with a header (comma-separated; tab-separated when the header has tabs and no
    commas). Accepted column names, case-insensitive, first match wins:

    * type: ``Label``, ``Interaction type``, ``interaction_type`` - it joins the ``Label`` of
      :func:`read_type_pairs` (in DeepDDI's file the *Interaction type* column, **not** the
      ``DDI type N`` column: the most frequent label, 49, is "The risk or severity of adverse
      effects can be increased ...", as in DeepDDI);
    * text: ``Description``, ``template``.

    Other columns (``Subject``, ``DDI type``) are ignored.

    Args:
        path: the CSV file.
        max_bytes: refuse larger files (default 200 MiB).

    Returns:
        type -> template text (with its ``#Drug1``/``#Drug2`` placeholders), sorted by type.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no recognised columns, a non-integer or duplicate type, or an empty template
            (the message names the file and line).
    """
    path = Path(path)
    _check_size(path, max_bytes)
    with path.open(encoding="utf-8") as handle:
        first = handle.readline()
    sep = "\t" if "\t" in first and "," not in first else ","
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False)
    lower = {str(c).strip().lower(): c for c in frame.columns}
    label_col = next((lower[n] for n in _LABEL_COLUMNS if n in lower), None)
    text_col = next((lower[n] for n in _TEXT_COLUMNS if n in lower), None)
    if label_col is None or text_col is None:
        raise ValueError(f"{path}, line 1: need a type column ({', '.join(_LABEL_COLUMNS)}) and a text column "
                         f"({', '.join(_TEXT_COLUMNS)}), case-insensitive; found {list(frame.columns)}")
    templates: dict[int, str] = {}
    for offset, (label, text) in enumerate(zip(frame[label_col], frame[text_col], strict=True)):
        line = offset + 2
        label, text = str(label).strip(), str(text).strip()
        if not label.isdigit():
            raise ValueError(f"{path}, line {line}: type {label!r} is not a non-negative integer")
        if not text:
            raise ValueError(f"{path}, line {line}: empty template for type {label}")
        if int(label) in templates:
            raise ValueError(f"{path}, line {line}: duplicate type {label}")
        templates[int(label)] = text
    return dict(sorted(templates.items()))


def template_sign(template: str, *, exposure_up: Relation = Relation.UNKNOWN) -> Relation:
    """Sign of one interaction template, by the rules of the module table (first match wins).

    Args:
        template: e.g. ``"#Drug1 may increase the anticoagulant activities of #Drug2."``.
        exposure_up: the sign when the template only says the exposure of ``#Drug2`` rises
            (rule 10); UNKNOWN by default, SYNERGY to follow DPR's case study.

    Returns:
        SYNERGY, ANTAGONISM or UNKNOWN (never NONE: a template is an interaction).
    """
    text = " ".join(template.lower().split())
    if "risk" in text and "increase" in text:
        return Relation.ANTAGONISM
    if "worsening" in text or "adverse effects" in text:
        return Relation.ANTAGONISM
    if any(phrase in text for phrase in _LOSS_OF_EFFICACY):
        return Relation.ANTAGONISM
    if "efficacy" in text:
        if re.search(r"\bdecrease[sd]?\b|\breduced?\b", text):
            return Relation.ANTAGONISM
        if re.search(r"\bincrease[sd]?\b", text):
            return Relation.SYNERGY
    activity = _ACTIVITY_RE.search(text)
    if activity is not None:
        increase = activity.group(1) == "increase"
        adverse = _ADVERSE_RE.search(activity.group(2)) is not None
        if adverse:
            return Relation.ANTAGONISM if increase else Relation.UNKNOWN
        return Relation.SYNERGY if increase else Relation.ANTAGONISM
    quantity = _EXPOSURE_RE.search(text)
    direction = _DIRECTION_RE.search(text)
    if quantity is not None and direction is not None:
        up = direction.group(1).startswith(("increase", "higher", "raise"))
        if quantity.group(1) in _INVERTED_EXPOSURE:
            up = not up
        return Relation(exposure_up) if up else Relation.ANTAGONISM
    return Relation.UNKNOWN


def template_signs(templates: Mapping[int, str], *, exposure_up: Relation = Relation.UNKNOWN) -> dict[int, Relation]:
    """:func:`template_sign` of every template.

    Args:
        templates: type -> template text (:func:`read_templates`).
        exposure_up: see :func:`template_sign`.

    Returns:
        type -> sign, the ``signs_by_label`` of :func:`signed_relation_matrix`.
    """
    return {int(label): template_sign(text, exposure_up=exposure_up) for label, text in templates.items()}


def _import_chem() -> Any:
    from medtoolkit.knowledge.molecules import _import_rdkit

    Chem, _ = _import_rdkit("canonical SMILES matching of DrugBank drugs")
    return Chem


def _canonical(Chem: Any, smiles: str, isomeric: bool) -> str | None:
    smiles = str(smiles).strip()
    if not smiles:
        return None
    molecule = Chem.MolFromSmiles(smiles)
    if molecule is None:
        return None
    return str(Chem.MolToSmiles(molecule, isomericSmiles=isomeric))


def match_drugs_by_smiles(drugbank_smiles: Mapping[str, str], atc_smiles: Mapping[str, Sequence[str]], *,
                          isomeric: bool = False) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Match DrugBank drugs to ATC codes through identical canonical SMILES (rdkit).

    Both sides are parsed with rdkit and written back as canonical SMILES; a DrugBank id matches
    every ATC code with at least one SMILES of the same canonical form. Stereochemistry is
    ignored by default (``isomeric=False``) since the ATC-side SMILES often omit it; salts and
    counter-ions are *not* stripped, so a salt form matches only the same salt form. Unparsable
    or empty SMILES are skipped and counted, never raised.

    Args:
        drugbank_smiles: DrugBank id -> SMILES (``drug_smiles.csv``).
        atc_smiles: ATC code -> its SMILES (e.g. :func:`medtoolkit.knowledge.molecules.smiles_for`
            over the vocabulary, zipped with the codes).
        isomeric: keep stereochemistry in the canonical form.

    Returns:
        ``(drug_to_atc, coverage)``: DrugBank id -> sorted ATC codes (matched ids only), and
        ``coverage`` with ``n_drugbank``, ``n_drugbank_matched``, ``n_drugbank_unparsable``,
        ``n_atc``, ``n_atc_matched``, ``n_atc_smiles``, ``n_atc_smiles_unparsable``,
        ``drugbank_fraction``, ``atc_fraction``, ``unmatched_atc`` (sorted) and ``isomeric``.

    Raises:
        ImportError: rdkit is missing (``pip install "medtoolkit[chem]"``).
    """
    Chem = _import_chem()
    atc_by_smiles: dict[str, set[str]] = {}
    n_atc_smiles = n_atc_bad = 0
    for code, smiles_list in atc_smiles.items():
        if isinstance(smiles_list, str):
            smiles_list = [smiles_list]
        for smiles in smiles_list:
            n_atc_smiles += 1
            canonical = _canonical(Chem, smiles, isomeric)
            if canonical is None:
                n_atc_bad += 1
                continue
            atc_by_smiles.setdefault(canonical, set()).add(str(code))
    drug_to_atc: dict[str, list[str]] = {}
    n_db_bad = 0
    for drug, smiles in drugbank_smiles.items():
        canonical = _canonical(Chem, smiles, isomeric) if isinstance(smiles, str) else None
        if canonical is None:
            n_db_bad += 1
            continue
        codes = atc_by_smiles.get(canonical)
        if codes:
            drug_to_atc[str(drug)] = sorted(codes)
    matched_atc = set().union(*drug_to_atc.values()) if drug_to_atc else set()
    n_db, n_atc = len(drugbank_smiles), len(atc_smiles)
    coverage: dict[str, Any] = {
        "n_drugbank": n_db, "n_drugbank_matched": len(drug_to_atc), "n_drugbank_unparsable": n_db_bad,
        "n_atc": n_atc, "n_atc_matched": len(matched_atc), "n_atc_smiles": n_atc_smiles,
        "n_atc_smiles_unparsable": n_atc_bad,
        "drugbank_fraction": len(drug_to_atc) / n_db if n_db else 0.0,
        "atc_fraction": len(matched_atc) / n_atc if n_atc else 0.0,
        "unmatched_atc": sorted(str(c) for c in atc_smiles if str(c) not in matched_atc),
        "isomeric": isomeric,
    }
    return drug_to_atc, coverage


def signed_relation_matrix(pairs: TypePairs, signs_by_label: Mapping[int, Relation] | None,
                           drug_to_atc: Mapping[str, Sequence[str]],
                           atc_codes: Sequence[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Directed ATC-level relation matrix from signed DrugBank pairs.

    Each pair ``(drug1, drug2, label)`` gets the sign of its label (UNKNOWN when
    ``signs_by_label`` is None or lacks the label) and lands on every ``(i, j)`` with
    ``atc_codes[i]`` among drug1's codes and ``atc_codes[j]`` among drug2's. When several pairs
    or labels land on one cell, the strongest wins: **ANTAGONISM > SYNERGY > UNKNOWN > NONE**
    (a harmful report is never hidden by a helpful one; the cells where signs disagreed are
    counted in ``n_cells_conflicting``). Cells with ``i == j`` (two drugs of the same ATC code)
    are left NONE and counted. Cells no pair reaches are NONE, which for ATC codes without a
    DrugBank match means *not known* rather than *no interaction* (``unmatched_atc``).

    Args:
        pairs: the typed pairs (:func:`read_type_pairs`), ``P`` rows.
        signs_by_label: label -> sign (:func:`template_signs`), or None without templates.
        drug_to_atc: DrugBank id -> ATC codes (:func:`match_drugs_by_smiles`).
        atc_codes: the vocabulary, ``N`` codes (matrix order).

    Returns:
        ``(relation, report)``: ``[N, N]`` int8 matrix of :class:`Relation` values, ``R[i, j]``
        the effect of code ``i`` on code ``j``; the report holds ``source``, ``n_pairs``,
        ``n_pairs_matched``, ``n_pairs_unmatched`` (a drug without an ATC code in the vocabulary),
        ``n_pairs_same_atc``, ``n_pairs_unsigned_label``, ``pairs_by_sign``, ``cells_by_sign``,
        ``n_cells_conflicting``, ``n_atc_with_relation``, ``unmatched_atc`` and ``note``.
    """
    codes = [str(c) for c in atc_codes]
    index = {code: k for k, code in enumerate(codes)}
    n = len(codes)
    signs = dict(signs_by_label or {})
    labels = np.asarray(pairs.labels, dtype=np.int64)
    unique_labels = np.unique(labels)
    lookup = {int(lab): int(signs.get(int(lab), Relation.UNKNOWN)) for lab in unique_labels}
    pair_sign = np.array([lookup[int(lab)] for lab in labels], dtype=np.int8) if len(labels) else np.zeros(0, np.int8)
    unsigned = int(sum(int((labels == lab).sum()) for lab in unique_labels if int(lab) not in signs))

    links = pd.DataFrame([(drug, index[code]) for drug, drug_codes in drug_to_atc.items()
                          for code in drug_codes if code in index], columns=["drug", "atc"])
    frame = pd.DataFrame({"drug1": pairs.drug1, "drug2": pairs.drug2, "sign": pair_sign,
                          "pair": np.arange(len(labels))})
    merged = frame.merge(links.rename(columns={"drug": "drug1", "atc": "i"}), on="drug1")
    merged = merged.merge(links.rename(columns={"drug": "drug2", "atc": "j"}), on="drug2")
    matched_pairs = merged["pair"].nunique()
    same = merged["i"].to_numpy() == merged["j"].to_numpy()
    n_same_pairs = int(merged.loc[same, "pair"].nunique())
    merged = merged.loc[~same]

    rank_of = np.array([0, 2, 3, 1], dtype=np.int8)  # NONE, SYNERGY, ANTAGONISM, UNKNOWN -> rank
    sign_of_rank = np.array([Relation.NONE, Relation.UNKNOWN, Relation.SYNERGY, Relation.ANTAGONISM], dtype=np.int8)
    rank = np.zeros((n, n), dtype=np.int8)
    i, j = merged["i"].to_numpy(np.int64), merged["j"].to_numpy(np.int64)
    np.maximum.at(rank, (i, j), rank_of[merged["sign"].to_numpy(np.int64)])
    relation = sign_of_rank[rank]
    distinct = merged.drop_duplicates(["i", "j", "sign"]).groupby(["i", "j"]).size()
    reached = set(np.flatnonzero(relation.any(axis=0) | relation.any(axis=1)).tolist())
    matched_codes = {code for drug_codes in drug_to_atc.values() for code in drug_codes}
    report: dict[str, Any] = {
        "source": pairs.source or "typed_ddi",
        "n_pairs": len(labels),
        "n_pairs_matched": int(matched_pairs),
        "n_pairs_unmatched": int(len(labels) - matched_pairs),
        "n_pairs_same_atc": n_same_pairs,
        "n_pairs_unsigned_label": unsigned,
        "pairs_by_sign": {r.name: int((pair_sign == r).sum()) for r in Relation if r is not Relation.NONE},
        "cells_by_sign": {r.name: int((relation == r).sum()) for r in Relation},
        "n_cells_conflicting": int((distinct > 1).sum()),
        "n_atc_with_relation": len(reached),
        "unmatched_atc": [code for code in codes if code not in matched_codes],
        "note": ("signed from templates (module ddi_types table); aggregation ANTAGONISM > SYNERGY > UNKNOWN"
                 if signs_by_label is not None else
                 "no templates given: every typed pair is UNKNOWN"),
    }
    return relation, report


def fallback_relation_matrix(ddi_adjacency: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Relation matrix without the typed file: every shipped DDI pair is ANTAGONISM.

    Args:
        ddi_adjacency: ``[N, N]`` 0/1 (or weighted) DDI matrix, e.g.
            :func:`medtoolkit.knowledge.ddi.ddi_adjacency`; any non-zero entry is an edge.

    Returns:
        ``(relation, report)``: ``[N, N]`` int8 symmetric matrix with ANTAGONISM (2) on the
        pairs and their transposes, NONE elsewhere and on the diagonal; the report is
        ``{"source": "ddi_adjacency", "note": ..., "n_edges": ...}`` saying no signs were read.

    Raises:
        ValueError: the adjacency is not square.
    """
    adjacency = np.asarray(ddi_adjacency)
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"ddi_adjacency must be [N, N], got shape {adjacency.shape}")
    edges = (adjacency != 0) | (adjacency != 0).T
    np.fill_diagonal(edges, False)
    relation = np.where(edges, np.int8(Relation.ANTAGONISM), np.int8(Relation.NONE)).astype(np.int8)
    report = {
        "source": "ddi_adjacency",
        "note": ("no typed DDI file: the shipped DDI pairs give ANTAGONISM edges only (symmetric); "
                 "no synergy and no unknown-sign relations are available"),
        "n_edges": int(edges.sum() // 2),
    }
    return relation, report


def read_drug_smiles(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> dict[str, str]:
    """Read DeepDDI's ``drug_smiles.csv``: DrugBank id -> SMILES.

    Args:
        path: a CSV with the columns ``drug_id`` and ``smiles`` (an unnamed index column is
            ignored).
        max_bytes: refuse larger files.

    Returns:
        ``{drug_id: smiles}`` (rows with an empty SMILES are skipped; the last row of a
        repeated id wins).

    Raises:
        FileNotFoundError: no such file.
        ValueError: too large or a column is missing (the message names it).
    """
    path = Path(path)
    _check_size(path, max_bytes)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    columns = {str(c).strip().lower(): c for c in frame.columns}
    for needed in ("drug_id", "smiles"):
        if needed not in columns:
            raise ValueError(f"{path}: missing column {needed!r} (columns: {', '.join(map(str, frame.columns))})")
    ids = frame[columns["drug_id"]].str.strip()
    smiles = frame[columns["smiles"]].str.strip()
    keep = (ids != "") & (smiles != "")
    return dict(zip(ids[keep], smiles[keep]))


def relations_from_directory(
    directory: str | Path,
    atc_codes: Sequence[str],
    atc_smiles: Mapping[str, Sequence[str]],
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Signed relations over an ATC vocabulary from a DeepDDI-format directory.

    Reads :data:`RELATION_FILES` (``Drugbank.txt`` typed pairs, ``Interaction_information.csv``
    templates signed by :func:`template_signs`, ``drug_smiles.csv``), matches DrugBank ids to
    ATC codes by canonical SMILES (:func:`match_drugs_by_smiles`, needs rdkit) and aggregates
    with :func:`signed_relation_matrix`.

    Args:
        directory: the folder holding the three files.
        atc_codes: the vocabulary, ``n`` codes (matrix order).
        atc_smiles: ATC code -> its SMILES (codes without SMILES are simply not matched).

    Returns:
        ``(relation, covered, report)``: ``[n, n]`` int8 :class:`Relation` matrix;
        ``[n]`` bool, the ATC codes matched to a DrugBank drug (for those, no listed
        interaction means no interaction); the report of :func:`signed_relation_matrix`
        plus ``"directory"``, ``"coverage"`` (matched ATC codes / vocabulary),
        ``"n_atc_matched"``, ``"n_atc"`` and ``"matching"`` (the SMILES-match coverage).

    Raises:
        FileNotFoundError: the directory or one of the files is missing (named).
        ImportError: rdkit is missing.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"typed DDI directory not found: {folder}")
    missing = [name for name in RELATION_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"typed DDI directory {folder} lacks {', '.join(missing)} "
                                f"(expected {', '.join(RELATION_FILES)})")
    pairs = read_type_pairs(folder / RELATION_FILES[0])
    signs = template_signs(read_templates(folder / RELATION_FILES[1]))
    codes = [str(code) for code in atc_codes]
    wanted = {code: atc_smiles[code] for code in codes if code in atc_smiles}
    drug_to_atc, matching = match_drugs_by_smiles(read_drug_smiles(folder / RELATION_FILES[2]), wanted)
    relation, report = signed_relation_matrix(pairs, signs, drug_to_atc, codes)
    matched = {code for linked in drug_to_atc.values() for code in linked}
    covered = np.array([code in matched for code in codes], dtype=bool)
    n = len(codes)
    report.update({
        "directory": str(folder),
        "n_atc": n,
        "n_atc_matched": int(covered.sum()),
        "coverage": float(covered.sum() / n) if n else 0.0,
        "matching": {k: v for k, v in matching.items() if k != "unmatched_atc"},
    })
    return relation, covered, report
