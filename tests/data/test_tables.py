"""read_table / find_table: conversion, and errors that name file, line and column."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from medtoolkit.data.report import DataReport
from medtoolkit.data.tables import DataFormatError, find_table, read_table

COLUMNS = {"SUBJECT_ID": "int", "HADM_ID": "int", "CODE": "str", "DOSE": "float"}
ENGINES = ["pandas", "arrow"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Every read_table test runs with both CSV engines (same frames, same errors)."""
    return str(request.param)


def write(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def test_find_table_case_insensitive_and_listing(tmp_path: Path) -> None:
    write(tmp_path / "Admissions.csv.gz", "A\n1\n")
    write(tmp_path / "other.csv", "A\n1\n")
    assert find_table(tmp_path, "ADMISSIONS") == tmp_path / "Admissions.csv.gz"
    expected = r"PRESCRIPTIONS.csv or PRESCRIPTIONS.csv.gz.*Admissions.csv.gz, other.csv"
    with pytest.raises(FileNotFoundError, match=expected):
        find_table(tmp_path, "PRESCRIPTIONS")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_table(tmp_path / "nope", "X")


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_reads_converts_and_keeps_line_numbers(tmp_path: Path, name: str, engine: str) -> None:
    path = write(tmp_path / name,
                 'row_id,subject_id,hadm_id,code,dose\n1,10,100,"4019, x",1.5\n\n2,10,100,,\n3,10,100,"4019, x",1.5\n')
    report = DataReport()
    frame = read_table(path, COLUMNS, report=report, engine=engine)
    assert list(frame.columns) == ["SUBJECT_ID", "HADM_ID", "CODE", "DOSE"]
    assert frame.index.tolist() == [2, 4]  # header = line 1, blank line 3, duplicate line 5 dropped
    assert frame["SUBJECT_ID"].dtype == np.int64 and frame["CODE"].tolist() == ["4019, x", ""]
    assert np.isnan(frame["DOSE"].iloc[1])
    steps = {d.step: d for d in report.drops}
    assert steps["read: duplicate rows"].count == 1 and steps["read: duplicate rows"].examples == ["line 5"]
    assert steps["read: blank lines"].count == 1


def test_optional_and_missing_columns(tmp_path: Path, engine: str) -> None:
    path = write(tmp_path / "t.csv", "SUBJECT_ID,HADM_ID\n1,2\n")
    frame = read_table(path, {"SUBJECT_ID": "int", "HADM_ID": "int", "GSN": "str"}, optional=["GSN"], engine=engine)
    assert list(frame.columns) == ["SUBJECT_ID", "HADM_ID"]
    expected = r"t.csv: required column 'CODE' is missing; the file has columns: SUBJECT_ID, HADM_ID"
    with pytest.raises(DataFormatError, match=expected):
        read_table(path, {"SUBJECT_ID": "int", "CODE": "str"}, engine=engine)


def test_bad_cell_names_file_line_column(tmp_path: Path, engine: str) -> None:
    path = write(tmp_path / "t.csv", "SUBJECT_ID,HADM_ID,CODE,DOSE\n1,2,a,1\n1,2x,b,2\n")
    with pytest.raises(DataFormatError, match=r"t.csv: line 3, column HADM_ID: '2x' is not an integer"):
        read_table(path, COLUMNS, engine=engine)
    blank = write(tmp_path / "b.csv", "SUBJECT_ID,HADM_ID,CODE,DOSE\n1,,a,1\n")
    with pytest.raises(DataFormatError, match=r"line 2, column HADM_ID: '' is not an integer"):
        read_table(blank, COLUMNS, engine=engine)
    nullable = read_table(blank, {"SUBJECT_ID": "int", "HADM_ID": "int?"}, engine=engine)
    assert nullable["HADM_ID"].isna().all()


def test_non_utf8_ragged_and_truncated(tmp_path: Path, engine: str) -> None:
    latin = write(tmp_path / "l.csv", b"SUBJECT_ID,HADM_ID,CODE,DOSE\n1,2,a,1\n1,2,caf\xe9,1\n")
    with pytest.raises(DataFormatError, match=r"l.csv: line 3: .*not valid UTF-8"):
        read_table(latin, COLUMNS, engine=engine)
    ragged = write(tmp_path / "r.csv", "SUBJECT_ID,HADM_ID,CODE,DOSE\n1,2,a,1\n1,2\n1,2,a,1\n")
    with pytest.raises(DataFormatError, match=r"r.csv: line 3: expected 4 fields as in the header, found 2"):
        read_table(ragged, COLUMNS, engine=engine)
    cut = write(tmp_path / "c.csv", "SUBJECT_ID,HADM_ID,CODE,DOSE\n1,2,a,1\n1,2,a")
    with pytest.raises(DataFormatError, match=r"c.csv: line 3: expected 4 fields.*truncated"):
        read_table(cut, COLUMNS, engine=engine)
    quote = write(tmp_path / "q.csv", 'SUBJECT_ID,HADM_ID,CODE,DOSE\n1,2,"a,1\n')
    with pytest.raises(DataFormatError, match=r"q.csv: line 2: a quoted field is never closed"):
        read_table(quote, COLUMNS, engine=engine)
    full = gzip.compress(("SUBJECT_ID,HADM_ID,CODE,DOSE\n" + "1,2,a,1\n" * 5000).encode())
    broken = tmp_path / "g.csv.gz"
    broken.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataFormatError, match=r"g.csv.gz: cannot decompress.*truncated or corrupt"):
        read_table(broken, COLUMNS, engine=engine)
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "missing.csv", COLUMNS, engine=engine)


def test_engines_give_the_same_frame_and_categorical_keeps_values(tmp_path: Path) -> None:
    text = "SUBJECT_ID,HADM_ID,CODE,DOSE,STAY\n" + "".join(
        f"{i % 7},{i % 3},c{i % 5},{i / 4},{'' if i % 4 == 0 else i}\n" for i in range(200)
    ) + "\n99,1,c1,0.25,1\n"
    path = write(tmp_path / "t.csv", text)
    columns = {**COLUMNS, "STAY": "int?"}
    reports = [DataReport(), DataReport(), DataReport()]
    plain = read_table(path, columns, report=reports[0], engine="pandas")
    arrow = read_table(path, columns, report=reports[1], engine="arrow")
    categorical = read_table(path, columns, report=reports[2], engine="arrow", categorical=True)
    for frame in (arrow, categorical):
        assert frame.index.tolist() == plain.index.tolist()  # blank line 202 shifts the last row to 203
        assert frame["CODE"].astype(str).tolist() == plain["CODE"].tolist()
        for column in ("SUBJECT_ID", "HADM_ID", "DOSE", "STAY"):
            assert frame[column].dtype == plain[column].dtype
            assert frame[column].equals(plain[column])
    assert str(categorical["CODE"].dtype) == "category"
    assert [r.to_json() for r in reports[1:]] == [reports[0].to_json()] * 2
    assert plain.index[-1] == 203


def test_arrow_engine_falls_back_without_pyarrow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import medtoolkit.data.tables as tables

    monkeypatch.setattr(tables, "arrow_available", lambda: False)
    assert tables.resolve_engine("arrow") == "pandas"
    path = write(tmp_path / "t.csv", "SUBJECT_ID,HADM_ID,CODE,DOSE\n1,2,a,1\n")
    assert read_table(path, COLUMNS, engine="arrow")["CODE"].tolist() == ["a"]
    with pytest.raises(ValueError, match="unknown table engine"):
        tables.resolve_engine("polars")
