"""Malformed MIMIC-III tables: every damage gives a clear error or a counted drop.

Each test copies the package's built-in MIMIC-III demo (``medtoolkit.resources.demo_path``)
into ``tmp_path``, damages it in one way and checks the documented outcome:

* a :class:`~medtoolkit.data.tables.DataFormatError` (or ``FileNotFoundError`` for a missing
  table) whose message names the file and, where the damage has one, the line and column;
* or a drop counted in ``EHRData.provenance["report"]`` - compared with a load of the
  undamaged copy, so the count is exactly the damage's.

The drug-knowledge BRICS decomposition (slow, irrelevant here) is switched off.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import medtoolkit.knowledge
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, EHRData
from medtoolkit.data.loaders.mimic3 import MIMIC3Dataset
from medtoolkit.data.tables import DataFormatError

TABLES = ("ADMISSIONS", "DIAGNOSES_ICD", "PROCEDURES_ICD", "PRESCRIPTIONS")


# ---------------------------------------------------------------------------- helpers
def _demo_dir() -> Path:
    from medtoolkit.resources import demo_path

    return Path(demo_path("mimic3"))


def _demo_source(name: str) -> Path:
    directory = _demo_dir()
    for candidate in (f"{name}.csv.gz", f"{name}.csv", f"{name.lower()}.csv.gz", f"{name.lower()}.csv"):
        if (directory / candidate).is_file():
            return directory / candidate
    raise FileNotFoundError(f"demo table {name} missing in {directory}")


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def copy_demo(directory: Path, compress: bool = False) -> Path:
    """The four demo tables as plain ``NAME.csv`` (or ``NAME.csv.gz``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        data = _read_bytes(_demo_source(name))
        if compress:
            (directory / f"{name}.csv.gz").write_bytes(gzip.compress(data))
        else:
            (directory / f"{name}.csv").write_bytes(data)
    return directory


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and data rows of a plain CSV table."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def edit(path: Path, change: Callable[[list[str], list[list[str]]], list[list[str]] | None]) -> None:
    """Apply ``change(header, rows)`` (in place, or returning new rows) and write the table back."""
    header, rows = read_rows(path)
    result = change(header, rows)
    write_rows(path, header, rows if result is None else result)


def load(root: Path, **options: object) -> EHRData:
    params = {"root": root, "cache": False, "min_visits": 1, **options}
    return MIMIC3Dataset(MIMIC3Dataset.Params(**params)).load(progress=False)


def drops(data: EHRData) -> dict[str, int]:
    """Drop counts by step (summed when a step appears twice)."""
    totals: dict[str, int] = {}
    for item in data.provenance["report"]["drops"]:
        totals[item["step"]] = totals.get(item["step"], 0) + int(item["count"])
    return totals


def delta(data: EHRData, base: EHRData) -> dict[str, int]:
    """Steps whose drop count changed, with the change."""
    after, before = drops(data), drops(base)
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)
            if after.get(k, 0) != before.get(k, 0)}


def visits_of(data: EHRData) -> list[tuple[str, float, tuple[str, ...], tuple[str, ...]]]:
    """``(patient, time, diagnoses, medications)`` per visit, in the data's order."""
    out = []
    diag_words, med_words = data.vocabularies[DIAGNOSES], data.vocabularies[MEDICATIONS]
    for p, pid in enumerate(data.patient_ids):
        for v in range(int(data.visit_offsets[p]), int(data.visit_offsets[p + 1])):
            d = data.codes[DIAGNOSES][data.code_offsets[DIAGNOSES][v]:data.code_offsets[DIAGNOSES][v + 1]]
            m = data.codes[MEDICATIONS][data.code_offsets[MEDICATIONS][v]:data.code_offsets[MEDICATIONS][v + 1]]
            out.append((pid, float(data.time[v]), tuple(sorted(diag_words.idx2word[i] for i in d)),
                        tuple(sorted(med_words.idx2word[i] for i in m))))
    return out


def surviving_admissions(root: Path, base: EHRData) -> pd.DataFrame:
    """Admissions of the undamaged copy that are visits of ``base`` (matched by patient and time).

    The demo's ADMITTIME values are damaged, so a visit's time is its earliest STARTDATE.
    """
    rx = pd.read_csv(root / "PRESCRIPTIONS.csv", dtype=str, keep_default_na=False)
    rx["DAYS"] = (pd.to_datetime(rx["STARTDATE"]) - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
    first = rx.groupby(["SUBJECT_ID", "HADM_ID"], as_index=False)["DAYS"].min()
    times = {(pid, float(t)) for pid, t, _, _ in visits_of(base)}
    keep = [(s, d) in times for s, d in zip(first["SUBJECT_ID"], first["DAYS"])]
    return first[keep].reset_index(drop=True)


@pytest.fixture(autouse=True)
def _no_brics(monkeypatch: pytest.MonkeyPatch) -> None:
    original = medtoolkit.knowledge.build_drug_knowledge
    monkeypatch.setattr(medtoolkit.knowledge, "build_drug_knowledge",
                        functools.partial(original, with_substructures=False))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EHRData]:
    """An undamaged plain-CSV copy and its load (the reference for drop deltas)."""
    root = copy_demo(tmp_path_factory.mktemp("pristine"))
    with pytest.MonkeyPatch.context() as patch:
        original = medtoolkit.knowledge.build_drug_knowledge
        patch.setattr(medtoolkit.knowledge, "build_drug_knowledge",
                      functools.partial(original, with_substructures=False))
        return root, load(root)


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return copy_demo(tmp_path / "mimic3")


# ---------------------------------------------------------------------------- files and structure
@pytest.mark.parametrize("table", TABLES)
def test_missing_table_names_the_table_and_directory(demo: Path, table: str) -> None:
    (demo / f"{table}.csv").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load(demo)
    message = str(error.value)
    assert table in message and str(demo) in message
    # the other tables are listed so the user sees what is there
    assert any(f"{other}.csv" in message for other in TABLES if other != table)


@pytest.mark.parametrize(
    ("table", "column"),
    [("ADMISSIONS", "HADM_ID"), ("ADMISSIONS", "ADMITTIME"), ("DIAGNOSES_ICD", "ICD9_CODE"),
     ("PROCEDURES_ICD", "ICD9_CODE"), ("PRESCRIPTIONS", "NDC"), ("PRESCRIPTIONS", "STARTDATE")],
)
def test_missing_column_names_file_and_column(demo: Path, table: str, column: str) -> None:
    path = demo / f"{table}.csv"
    header, rows = read_rows(path)
    at = header.index(column)
    write_rows(path, header[:at] + header[at + 1:], [r[:at] + r[at + 1:] for r in rows])
    with pytest.raises(DataFormatError) as error:
        load(demo)
    message = str(error.value)
    assert f"{table}.csv" in message and repr(column) in message and "missing" in message


def test_truncated_gzip_is_reported(tmp_path: Path) -> None:
    root = copy_demo(tmp_path / "gz", compress=True)
    path = root / "PRESCRIPTIONS.csv.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError) as error:
        load(root)
    message = str(error.value)
    assert "PRESCRIPTIONS.csv.gz" in message and ("truncated" in message or "corrupt" in message)


def test_plain_csv_cut_mid_row_names_the_last_line(demo: Path) -> None:
    path = demo / "DIAGNOSES_ICD.csv"
    lines = path.read_text().splitlines()
    last = lines[-1].split(",")
    path.write_text("\n".join(lines[:-1] + [",".join(last[:3])]))  # no newline, two fields lost
    with pytest.raises(DataFormatError) as error:
        load(demo)
    message = str(error.value)
    assert "DIAGNOSES_ICD.csv" in message and f"line {len(lines)}" in message
    assert "expected 5 fields" in message and "found 3" in message and "truncated" in message


def test_csv_cut_inside_a_quoted_field_is_reported(demo: Path) -> None:
    path = demo / "PRESCRIPTIONS.csv"
    text = path.read_text()
    lines = text.splitlines()
    quoted = max(i for i, line in enumerate(lines) if '"' in line)
    cut = lines[quoted][: lines[quoted].index('"') + 3]  # opening quote kept, closing one lost
    path.write_text("\n".join(lines[:quoted] + [cut]))
    with pytest.raises(DataFormatError) as error:
        load(demo)
    message = str(error.value)
    assert "PRESCRIPTIONS.csv" in message and f"line {quoted + 1}" in message and "truncated" in message


def test_ragged_row_names_file_and_line(demo: Path) -> None:
    path = demo / "PROCEDURES_ICD.csv"
    lines = path.read_text().splitlines()
    lines[9] += ",EXTRA"  # line 10 of the file
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as error:
        load(demo)
    message = str(error.value)
    assert "PROCEDURES_ICD.csv" in message and "line 10:" in message
    assert "expected 5 fields" in message and "found 6" in message


@pytest.mark.parametrize("table", ["PRESCRIPTIONS", "ADMISSIONS"])
def test_header_only_table_is_an_error(demo: Path, table: str) -> None:
    path = demo / f"{table}.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataFormatError) as error:
        load(demo)
    message = str(error.value)
    assert f"{table}.csv" in message and "no data rows" in message


def test_empty_file_is_an_error(demo: Path) -> None:
    (demo / "PROCEDURES_ICD.csv").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"PROCEDURES_ICD\.csv.*empty"):
        load(demo)


def test_non_utf8_drug_name_names_file_line_and_column(demo: Path) -> None:
    path = demo / "PRESCRIPTIONS.csv"
    lines = path.read_bytes().split(b"\n")
    header = lines[0].decode().split(",")
    fields = lines[41].split(b",")
    fields[header.index("DRUG")] = b"Acetamin\xe9phen"  # latin-1 e-acute
    lines[41] = b",".join(fields)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataFormatError) as error:
        load(demo)
    message = str(error.value)
    assert "PRESCRIPTIONS.csv" in message and "line 42" in message and "DRUG" in message and "UTF-8" in message


def test_non_integer_hadm_id_names_file_line_and_column(demo: Path) -> None:
    def damage(header: list[str], rows: list[list[str]]) -> None:
        rows[6][header.index("HADM_ID")] = "14x345"

    edit(demo / "DIAGNOSES_ICD.csv", damage)
    with pytest.raises(DataFormatError) as error:
        load(demo)
    message = str(error.value)
    assert "DIAGNOSES_ICD.csv" in message and "line 8" in message and "HADM_ID" in message and "14x345" in message


def test_admission_listed_twice_is_an_error(demo: Path) -> None:
    def damage(header: list[str], rows: list[list[str]]) -> list[list[str]]:
        copy = list(rows[3])
        copy[header.index("ADMITTIME")] = "2150-01-01 00:00:00"
        return rows + [copy]

    edit(demo / "ADMISSIONS.csv", damage)
    _, rows = read_rows(demo / "ADMISSIONS.csv")
    with pytest.raises(DataFormatError) as error:
        load(demo)
    message = str(error.value)
    assert "ADMISSIONS.csv" in message and f"line {len(rows) + 1}" in message and "HADM_ID" in message


# ---------------------------------------------------------------------------- dates and order
def test_damaged_admittime_without_prescription_dates_is_an_error(demo: Path) -> None:
    header, admissions = read_rows(demo / "ADMISSIONS.csv")
    hadm = admissions[10][header.index("HADM_ID")]
    assert "/" in admissions[10][header.index("ADMITTIME")]  # the demo's two-digit-year damage

    def blank_dates(h: list[str], rows: list[list[str]]) -> None:
        for row in rows:
            if row[h.index("HADM_ID")] == hadm:
                row[h.index("STARTDATE")] = ""

    edit(demo / "PRESCRIPTIONS.csv", blank_dates)
    with pytest.raises(DataFormatError) as error:
        load(demo)
    message = str(error.value)
    assert "ADMISSIONS.csv" in message and "line 12" in message and "ADMITTIME" in message and hadm in message


def test_two_digit_years_are_replaced_by_prescription_dates(pristine: tuple[Path, EHRData]) -> None:
    root, base = pristine
    notes = " ".join(base.provenance["report"]["notes"])
    assert "ADMITTIME" in notes and "STARTDATE" in notes
    rx = pd.read_csv(root / "PRESCRIPTIONS.csv", dtype=str)
    earliest = (pd.to_datetime(rx["STARTDATE"]) - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
    assert {t for _, t, _, _ in visits_of(base)} <= set(earliest.astype(float))
    # years of MIMIC's shifted calendar, not 1964 / 2026 from the two-digit years
    years = 1970 + np.asarray(base.time) / 365.25
    assert years.min() > 2090


def test_unparsable_startdate_names_file_line_and_column(demo: Path) -> None:
    def damage(header: list[str], rows: list[list[str]]) -> None:
        rows[20][header.index("STARTDATE")] = "21/46-07-2x"

    edit(demo / "PRESCRIPTIONS.csv", damage)
    with pytest.raises(DataFormatError) as error:
        load(demo)
    message = str(error.value)
    assert "PRESCRIPTIONS.csv" in message and "line 22" in message and "STARTDATE" in message


def test_visits_are_chronological_not_by_hadm_id(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    root, base = pristine
    alive = surviving_admissions(root, base)
    multi = alive.groupby("SUBJECT_ID").filter(lambda g: len(g) >= 2).sort_values(["SUBJECT_ID", "DAYS"])
    assert len(multi), "the demo has patients with two or more complete visits"
    subject = multi["SUBJECT_ID"].iloc[0]
    early, late = multi.loc[multi["SUBJECT_ID"] == subject, "HADM_ID"].iloc[[0, -1]]
    # give the earlier admission the larger HADM_ID in every table (swap the two ids)
    new_id = {early: late, late: early} if int(early) < int(late) else {early: early, late: late}
    for table in TABLES:
        def swap(header: list[str], rows: list[list[str]]) -> None:
            at = header.index("HADM_ID")
            for row in rows:
                row[at] = new_id.get(row[at], row[at])

        edit(demo / f"{table}.csv", swap)
    data = load(demo)
    ours = [v for v in visits_of(data) if v[0] == subject]
    assert ours == [v for v in visits_of(base) if v[0] == subject]
    assert [t for _, t, _, _ in ours] == sorted(t for _, t, _, _ in ours)
    # across the whole dataset times are non-decreasing within every patient
    for p in range(data.n_patients):
        t = data.time[data.visit_offsets[p]:data.visit_offsets[p + 1]]
        assert np.all(np.diff(t) >= 0)


# ---------------------------------------------------------------------------- counted drops
def test_blank_and_nan_icd_codes_are_counted(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    _, base = pristine

    def damage(header: list[str], rows: list[list[str]]) -> None:
        at = header.index("ICD9_CODE")
        for i, value in ((3, ""), (40, " "), (80, "NaN"), (120, "nan"), (160, "NA")):
            rows[i][at] = value

    edit(demo / "DIAGNOSES_ICD.csv", damage)
    data = load(demo)
    assert delta(data, base).get("diagnoses: blank code") == 5
    assert not {"NaN", "nan", "NA", ""} & set(data.vocabularies[DIAGNOSES].idx2word)


def test_blank_icd_procedure_codes_are_counted(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    _, base = pristine

    def damage(header: list[str], rows: list[list[str]]) -> None:
        rows[5][header.index("ICD9_CODE")] = ""
        rows[6][header.index("ICD9_CODE")] = ""

    edit(demo / "PROCEDURES_ICD.csv", damage)
    assert delta(load(demo), base).get("procedures: blank code") == 2


def _set_ndc(demo: Path, values: dict[int, str]) -> None:
    def damage(header: list[str], rows: list[list[str]]) -> None:
        for i, value in values.items():
            rows[i][header.index("NDC")] = value

    edit(demo / "PRESCRIPTIONS.csv", damage)


def _valid_ndc_rows(root: Path, n: int) -> list[int]:
    """Row positions (0-based, data rows) with a valid 11-digit NDC and a unique row content."""
    header, rows = read_rows(root / "PRESCRIPTIONS.csv")
    seen: dict[tuple[str, ...], int] = {}
    for row in rows:
        key = tuple(row[header.index(c)] for c in ("SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTDATE", "NDC"))
        seen[key] = seen.get(key, 0) + 1
    picked = []
    for i, row in enumerate(rows):
        ndc = row[header.index("NDC")]
        key = tuple(row[header.index(c)] for c in ("SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTDATE", "NDC"))
        if len(ndc) == 11 and ndc.isdigit() and ndc != "0" * 11 and seen[key] == 1 and i % 7 == 0:
            picked.append(i)
        if len(picked) == n:
            break
    return picked


def test_blank_ndc_is_counted(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    root, base = pristine
    rows = _valid_ndc_rows(root, 4)
    _set_ndc(demo, {i: "" for i in rows})
    assert delta(load(demo), base).get("prescriptions: NDC blank or 0") == 4


def test_ndc_zero_is_counted_as_unknown(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    root, base = pristine
    rows = _valid_ndc_rows(root, 3)
    _set_ndc(demo, {rows[0]: "0", rows[1]: "00000000000", rows[2]: "0"})
    changed = delta(load(demo), base)
    assert changed.get("prescriptions: NDC blank or 0") == 3
    assert "prescriptions: NDC malformed" not in changed


@pytest.mark.parametrize("bad", ["00O0649430A", "1234567", "123456789012", "ABC"])
def test_malformed_ndc_is_counted(demo: Path, pristine: tuple[Path, EHRData], bad: str) -> None:
    root, base = pristine
    rows = _valid_ndc_rows(root, 2)
    _set_ndc(demo, {i: bad for i in rows})
    data = load(demo)
    assert delta(data, base).get("prescriptions: NDC malformed") == 2
    malformed = next(d for d in data.provenance["report"]["drops"] if d["step"] == "prescriptions: NDC malformed")
    assert any(bad in example for example in malformed["examples"])


def test_exact_duplicate_rows_are_counted_once_each(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    _, base = pristine
    edit(demo / "DIAGNOSES_ICD.csv", lambda header, rows: rows + [rows[2], rows[50], rows[50]])
    data = load(demo)
    assert delta(data, base) == {"read: duplicate rows": 3}
    assert visits_of(data) == visits_of(base)
    dup = [d for d in data.provenance["report"]["drops"]
           if d["step"] == "read: duplicate rows" and d["source"] == "DIAGNOSES_ICD.csv"]
    assert len(dup) == 1 and dup[0]["count"] == 3


def test_visit_whose_drugs_all_fail_to_map_is_dropped_and_counted(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    root, base = pristine
    alive = surviving_admissions(root, base)
    hadm = alive["HADM_ID"].iloc[0]

    def unmappable(header: list[str], rows: list[list[str]]) -> None:
        for row in rows:
            if row[header.index("HADM_ID")] == hadm:
                row[header.index("NDC")] = "0"
                row[header.index("GSN")] = ""
                row[header.index("DRUG")] = "Zz unknown product"
                row[header.index("DRUG_NAME_GENERIC")] = "Zz unknown product"
                row[header.index("DRUG_NAME_POE")] = "Zz unknown product"

    edit(demo / "PRESCRIPTIONS.csv", unmappable)
    data = load(demo)
    assert delta(data, base).get("visits: no medications") == 1
    assert data.n_visits == base.n_visits - 1


def test_admission_without_diagnoses_is_dropped_and_counted(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    root, base = pristine
    hadm = surviving_admissions(root, base)["HADM_ID"].iloc[-1]
    edit(demo / "DIAGNOSES_ICD.csv",
         lambda header, rows: [r for r in rows if r[header.index("HADM_ID")] != hadm])
    data = load(demo)
    assert delta(data, base).get("visits: no diagnoses") == 1
    assert data.n_visits == base.n_visits - 1


def test_events_of_unknown_admissions_are_counted(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    _, base = pristine

    def orphan(header: list[str], rows: list[list[str]]) -> list[list[str]]:
        extra = list(rows[0])
        extra[header.index("HADM_ID")] = "999999"
        return rows + [extra]

    edit(demo / "DIAGNOSES_ICD.csv", orphan)
    assert delta(load(demo), base) == {"diagnoses: unknown visit": 1}


def test_blank_lines_are_counted(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    _, base = pristine
    path = demo / "PROCEDURES_ICD.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:5] + ["", ""] + lines[5:]) + "\n\n")
    data = load(demo)
    assert delta(data, base) == {"read: blank lines": 3}
    assert visits_of(data) == visits_of(base)


# ---------------------------------------------------------------------------- accepted variants
def test_upper_and_lower_case_headers_give_the_same_data(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    _, base = pristine
    for i, table in enumerate(TABLES):
        path = demo / f"{table}.csv"
        lines = path.read_text().split("\n")
        lines[0] = lines[0].lower() if i % 2 == 0 else lines[0].title()
        target = demo / (f"{table.lower()}.csv" if i < 2 else path.name)
        path.unlink()
        target.write_text("\n".join(lines))
    data = load(demo)
    assert visits_of(data) == visits_of(base)
    assert drops(data) == drops(base)


def test_csv_and_csv_gz_give_the_same_data(tmp_path: Path, pristine: tuple[Path, EHRData]) -> None:
    _, base = pristine
    root = copy_demo(tmp_path / "gz", compress=True)
    (root / "PROCEDURES_ICD.csv.gz").unlink()  # mixed: three compressed tables, one plain
    (root / "PROCEDURES_ICD.csv").write_bytes(_read_bytes(_demo_source("PROCEDURES_ICD")))
    data = load(root)
    assert visits_of(data) == visits_of(base)
    assert sorted(drops(data).values()) == sorted(drops(base).values())


def test_byte_order_mark_and_crlf_are_accepted(demo: Path, pristine: tuple[Path, EHRData]) -> None:
    _, base = pristine
    path = demo / "ADMISSIONS.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    rx = demo / "DIAGNOSES_ICD.csv"
    rx.write_bytes(rx.read_bytes().replace(b"\n", b"\r\n"))
    data = load(demo)
    assert visits_of(data) == visits_of(base)
    assert drops(data) == drops(base)


def test_copy_helper_is_faithful(pristine: tuple[Path, EHRData]) -> None:
    """The tests' CSV rewrite keeps the tables byte-identical when nothing is changed."""
    root, _ = pristine
    for table in TABLES:
        path = root / f"{table}.csv"
        header, rows = read_rows(path)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        assert pd.read_csv(io.StringIO(buffer.getvalue()), dtype=str).equals(pd.read_csv(path, dtype=str))
