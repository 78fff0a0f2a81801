"""Turn long event tables (patient, visit, code) into :class:`EHRData`, counting every drop.

Shared by the raw loaders (MIMIC-III, MIMIC-IV, eICU). The steps, in order, each counted in
the :class:`~medtoolkit.data.report.DataReport`:

1. events with a blank code, or whose (patient, visit) has no row in ``visits``, are dropped;
2. repeated codes within a visit are removed (the first occurrence keeps its place);
3. per vocabulary, only the ``top_n`` most frequent codes are kept: exactly N codes, ranked
   by the number of visits holding them (rows after step 2), ties broken by the code text in
   ascending order, so the choice is deterministic; the report entry also counts the visits
   that lost every code of that kind (they are dropped in step 4);
4. visits lacking diagnoses, procedures or medications are dropped (checked in the order
   medications, diagnoses, procedures; each visit is counted once, under the first missing kind);
5. patients with fewer than ``min_visits`` visits are dropped - applied **last**, so every
   patient in the result really has that many visits (the field's pipelines filter too early);
6. patients are ordered by id, visits by time then visit id (chronological), vocabularies
   hold their codes in sorted order.

Everything is vectorised (pandas factorisation + numpy), so millions of events take seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, STANDARD_VOCABULARIES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.report import DataReport
from medtoolkit.data.vocab import Vocabulary

#: order in which missing kinds are checked when dropping incomplete visits
_COMPLETENESS_ORDER = (MEDICATIONS, DIAGNOSES, PROCEDURES)


def _natural_order(values: np.ndarray) -> np.ndarray:
    """Sort keys for ids: numeric when every id is an integer string, else lexicographic."""
    as_text = pd.Series(values, dtype=str)
    numeric = pd.to_numeric(as_text, errors="coerce")
    if len(as_text) and not numeric.isna().any():
        return numeric.to_numpy(dtype=np.float64)
    return pd.factorize(as_text, sort=True)[0].astype(np.float64)


def _category_ids(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A categorical code column as ``([n] ids, [k] distinct stripped codes, [n] blank mask)``.

    Codes equal after stripping share an id; missing, empty and ``"nan"`` codes are blank
    (their id is 0 and must be masked out), as in the string path of :func:`assemble_ehr`.
    """
    text = pd.Series(np.asarray(values.cat.categories, dtype=object)).astype(str).str.strip()
    ids, table = pd.factorize(text.to_numpy(dtype=object))
    table = np.asarray(table, dtype=object)
    blank_id = (table == "") | (table == "nan")
    codes = values.cat.codes.to_numpy()
    row_ids = ids[np.maximum(codes, 0)].astype(np.int64) if len(ids) else np.zeros(len(codes), dtype=np.int64)
    blank = (codes < 0) | (blank_id[row_ids] if len(ids) else True)
    return row_ids, table, np.asarray(blank, dtype=bool)


def _category_lookup(index: pd.Index, values: pd.Series) -> np.ndarray:
    """``index.get_indexer(values.astype(str))`` for a categorical column, once per category."""
    categories = pd.Index(np.asarray(values.cat.categories, dtype=object)).astype(str)
    positions = index.get_indexer(categories).astype(np.int64)
    codes = values.cat.codes.to_numpy()
    out = positions[np.maximum(codes, 0)] if len(positions) else np.full(len(codes), -1, dtype=np.int64)
    return np.where(codes < 0, index.get_indexer(pd.Index(["nan"]))[0], out) if (codes < 0).any() else out


def _check_columns(frame: pd.DataFrame, needed: tuple[str, ...], what: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"assemble_ehr: {what} lacks columns {missing}; it has {list(frame.columns)}")


def assemble_ehr(
    events: Mapping[str, pd.DataFrame],
    visits: pd.DataFrame,
    drug_knowledge: Callable[[list[str]], DrugKnowledge],
    *,
    name: str,
    report: DataReport,
    min_visits: int = 1,
    top_n: Mapping[str, int | None] = {},  # noqa: B006 - read-only
    provenance: dict[str, Any] | None = None,
) -> EHRData:
    """Build :class:`EHRData` from event tables.

    Args:
        events: per vocabulary (``"diagnoses"``, ``"procedures"``, ``"medications"``) a frame
            with string columns ``PATIENT``, ``VISIT``, ``CODE``; row order is the order codes
            keep within a visit.
        visits: one row per visit: ``PATIENT``, ``VISIT``, ``TIME`` (float, any monotone unit;
            NaN when unknown - then that patient's visits are ordered by visit id and it is
            noted in the report) and optionally ``HOSPITAL`` (int).
        drug_knowledge: called with the final medication codes (vocabulary order); returns the
            aligned :class:`DrugKnowledge`.
        name: dataset name.
        report: receives every drop and a note on ordering.
        min_visits: patients with fewer visits (after every other filter) are dropped.
        top_n: per vocabulary, keep only the N most frequent codes (None or absent = all).
        provenance: extra provenance; ``"report"`` and ``"counts"`` are added.

    Returns:
        The assembled data (patients by id, visits chronological, vocabularies sorted).

    Raises:
        ValueError: a frame lacks a column, ``visits`` repeats a visit, or nothing survives.
    """
    for vocab in STANDARD_VOCABULARIES:
        if vocab not in events:
            raise ValueError(f"assemble_ehr: events lack the {vocab!r} table")
        _check_columns(events[vocab], ("PATIENT", "VISIT", "CODE"), f"events[{vocab!r}]")
    _check_columns(visits, ("PATIENT", "VISIT", "TIME"), "visits")

    # ---- visit table: one row per (patient, visit)
    visit_patient = visits["PATIENT"].astype(str).to_numpy()
    visit_id = visits["VISIT"].astype(str).to_numpy()
    patient_codes, patient_uniques = pd.factorize(visit_patient)
    visit_codes, visit_uniques = pd.factorize(visit_id)
    patient_index, visit_index = pd.Index(patient_uniques), pd.Index(visit_uniques)
    n_vid = max(len(visit_uniques), 1)
    visit_key = patient_codes.astype(np.int64) * n_vid + visit_codes
    if len(np.unique(visit_key)) != len(visit_key):
        duplicated = pd.Series(visit_key).duplicated().to_numpy()
        first = int(np.flatnonzero(duplicated)[0])
        raise ValueError(
            f"assemble_ehr: visits table repeats visit {visit_id[first]!r} of patient {visit_patient[first]!r}"
        )
    key_order = np.argsort(visit_key, kind="stable")
    sorted_keys = visit_key[key_order]
    n_visits_in = len(visit_key)

    # ---- events -> visit row index, blank codes and orphans dropped, within-visit dedupe
    per_vocab: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # vocab -> (visit row, code strings or ids)
    code_tables: dict[str, np.ndarray] = {}  # vocab -> distinct code strings, when codes are ids
    for vocab in STANDARD_VOCABULARIES:
        frame = events[vocab]
        by_value = all(isinstance(frame[c].dtype, pd.CategoricalDtype) for c in ("PATIENT", "VISIT", "CODE"))
        if by_value:  # categorical columns: text work once per distinct value, codes become ids
            code, table, blank = _category_ids(frame["CODE"])
            code_tables[vocab] = table
            pc = _category_lookup(patient_index, frame["PATIENT"])
            vc = _category_lookup(visit_index, frame["VISIT"])
        else:
            code = frame["CODE"].astype(str).str.strip().to_numpy(dtype=object)
            blank = (frame["CODE"].isna().to_numpy()) | (code == "") | (code == "nan")
            pc = patient_index.get_indexer(frame["PATIENT"].astype(str)).astype(np.int64)
            vc = visit_index.get_indexer(frame["VISIT"].astype(str)).astype(np.int64)
        report.drop(f"{vocab}: blank code", int(blank.sum()), "missing or empty code", source=vocab)
        key = pc * n_vid + vc
        position = np.searchsorted(sorted_keys, key)
        position = np.minimum(position, max(len(sorted_keys) - 1, 0))
        known = (pc >= 0) & (vc >= 0) & (len(sorted_keys) > 0)
        if len(sorted_keys):
            known &= sorted_keys[position] == key
        orphan = ~known & ~blank
        if orphan.any():
            where = np.flatnonzero(orphan)
            pairs = pd.DataFrame({"p": np.asarray(frame["PATIENT"].iloc[where], dtype=object),
                                  "v": np.asarray(frame["VISIT"].iloc[where], dtype=object)})
            examples = [f"patient {p} visit {v}" for p, v in pairs.drop_duplicates().head(5).itertuples(index=False)]
            report.drop(
                f"{vocab}: unknown visit", int(orphan.sum()), "no row for this visit in the visits table",
                source=vocab, examples=examples,
            )
        keep = known & ~blank
        rows = key_order[position[keep]] if len(sorted_keys) else np.zeros(0, dtype=np.int64)
        codes = code[keep]
        if by_value:  # one int64 key per (visit row, code id)
            dedup = pd.Series(rows * max(len(code_tables[vocab]), 1) + codes).duplicated().to_numpy()
        else:
            dedup = pd.DataFrame({"row": rows, "code": codes}).duplicated().to_numpy()
        report.drop(
            f"{vocab}: repeated within visit", int(dedup.sum()), "the same code twice in one visit", source=vocab
        )
        rows, codes = rows[~dedup], codes[~dedup]
        limit = top_n.get(vocab)
        if limit is not None and by_value:
            per_id = np.bincount(codes, minlength=len(code_tables[vocab]))
            present = np.flatnonzero(per_id)
            counts = pd.Series(per_id[present], index=pd.Index(code_tables[vocab][present], dtype=object))
            ranked = pd.DataFrame({"code": counts.index, "id": present, "count": counts.to_numpy()})
            ranked = ranked.sort_values(["count", "code"], ascending=[False, True], kind="stable")
            kept_codes = set(ranked["code"].iloc[: int(limit)])
            kept_ids = np.zeros(len(per_id), dtype=bool)
            kept_ids[ranked["id"].iloc[: int(limit)].to_numpy()] = True
            inside = kept_ids[codes]
        elif limit is not None:
            counts = pd.Series(codes).value_counts(sort=False)
            ranked = counts.reset_index()
            ranked.columns = ["code", "count"]
            ranked = ranked.sort_values(["count", "code"], ascending=[False, True], kind="stable")
            kept_codes = set(ranked["code"].iloc[: int(limit)])
            inside = pd.Series(codes).isin(kept_codes).to_numpy()
        if limit is not None:
            emptied = len(np.unique(rows)) - len(np.unique(rows[inside]))
            report.drop(
                f"{vocab}: top-{limit} filter", int((~inside).sum()),
                f"code outside the {limit} most frequent ({len(counts) - len(kept_codes)} codes removed; "
                f"{emptied} visits lost every {vocab} code and are dropped below as 'visits: no {vocab}')",
                source=vocab,
            )
            rows, codes = rows[inside], codes[inside]
        per_vocab[vocab] = (rows, codes)

    # ---- visits with all three kinds
    alive = np.ones(n_visits_in, dtype=bool)
    for vocab in _COMPLETENESS_ORDER:
        has = np.zeros(n_visits_in, dtype=bool)
        has[per_vocab[vocab][0]] = True
        lacking = alive & ~has
        report.drop(
            f"visits: no {vocab}", int(lacking.sum()), f"visit has no {vocab} left after the filters above",
            source="visits",
            examples=[f"patient {p} visit {v}" for p, v in zip(visit_patient[lacking][:5], visit_id[lacking][:5])],
        )
        alive &= has

    # ---- min_visits per patient, applied last
    per_patient = np.bincount(patient_codes[alive], minlength=len(patient_uniques))
    short_patient = (per_patient > 0) & (per_patient < min_visits)
    if short_patient.any():
        short_visit = alive & short_patient[patient_codes]
        report.drop(
            f"patients: fewer than {min_visits} visits", int(short_patient.sum()),
            f"patients with 1..{min_visits - 1} complete visits (their {int(short_visit.sum())} visits go too)",
            source="visits", examples=[str(p) for p in patient_uniques[short_patient][:5]],
        )
        alive &= ~short_visit
    without = int((per_patient == 0).sum())
    report.drop("patients: no complete visit", without, "every visit of the patient was dropped", source="visits")
    if not alive.any():
        raise ValueError(
            f"assemble_ehr({name}): no visit survives the filters; see the report:\n{report.to_markdown()}"
        )

    # ---- order: patients by id, visits by time then visit id
    times = pd.to_numeric(visits["TIME"], errors="coerce").to_numpy(dtype=np.float64)
    rows_alive = np.flatnonzero(alive)
    p_sort = _natural_order(np.asarray(patient_uniques, dtype=object))[patient_codes[rows_alive]]
    v_sort = _natural_order(np.asarray(visit_uniques, dtype=object))[visit_codes[rows_alive]]
    t = times[rows_alive]
    nan_time = np.isnan(t)
    if nan_time.any():
        patient_has_nan = np.zeros(len(patient_uniques), dtype=bool)
        patient_has_nan[patient_codes[rows_alive][nan_time]] = True
        affected = patient_has_nan[patient_codes[rows_alive]]
        t = np.where(affected, 0.0, t)
        report.note(
            f"{int(nan_time.sum())} visits have no time; the visits of their {int(patient_has_nan.sum())} "
            "patients are ordered by visit id"
        )
    order = np.lexsort((v_sort, t, p_sort))
    final_rows = rows_alive[order]
    position_of_row = np.full(n_visits_in, -1, dtype=np.int64)
    position_of_row[final_rows] = np.arange(len(final_rows))
    final_patients = patient_codes[final_rows]
    boundaries = np.flatnonzero(np.diff(final_patients)) + 1
    visit_offsets = np.concatenate(([0], boundaries, [len(final_rows)])).astype(np.int64)
    patient_ids = [str(patient_uniques[final_patients[i]]) for i in visit_offsets[:-1]]

    # ---- vocabularies and CSR codes
    vocabularies: dict[str, Vocabulary] = {}
    codes_out: dict[str, np.ndarray] = {}
    offsets_out: dict[str, np.ndarray] = {}
    for vocab in STANDARD_VOCABULARIES:
        rows, codes = per_vocab[vocab]
        pos = position_of_row[rows]
        keep = pos >= 0
        pos, codes = pos[keep], codes[keep]
        if vocab in code_tables:  # ids -> ranks of their code strings among the codes used
            used = np.unique(codes)
            names = code_tables[vocab][used]
            order = np.argsort(names.astype(str), kind="stable")
            rank = np.zeros(len(code_tables[vocab]), dtype=np.int64)
            rank[used[order]] = np.arange(len(used))
            index, uniques = rank[codes], names[order]
        else:
            index, uniques = pd.factorize(pd.Series(codes, dtype=str), sort=True)
        vocabularies[vocab] = Vocabulary([str(u) for u in uniques], name=vocab)
        order_codes = np.argsort(pos, kind="stable")
        codes_out[vocab] = index[order_codes].astype(np.int32)
        counts = np.bincount(pos, minlength=len(final_rows))
        offsets = np.zeros(len(final_rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        offsets_out[vocab] = offsets

    knowledge = drug_knowledge(list(vocabularies[MEDICATIONS].idx2word))
    hospital = None
    if "HOSPITAL" in visits.columns:
        hospital = pd.to_numeric(visits["HOSPITAL"], errors="raise").to_numpy()[final_rows].astype(np.int32)
    meta = dict(provenance or {})
    meta["counts"] = {
        "patients": len(patient_ids),
        "visits": int(len(final_rows)),
        **{f"vocab_{v}": len(vocabularies[v]) for v in STANDARD_VOCABULARIES},
    }
    meta["report"] = report.to_json()
    return EHRData(
        vocabularies=vocabularies,
        visit_offsets=visit_offsets,
        codes=codes_out,
        code_offsets=offsets_out,
        patient_ids=patient_ids,
        knowledge=knowledge,
        hospital=hospital,
        time=times[final_rows],
        name=name,
        provenance=meta,
    )
