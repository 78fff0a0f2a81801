"""DataReport: drops, coverage, notes, JSON round trip and Markdown."""

from __future__ import annotations

import json

import pytest

from medtoolkit.data.report import DataReport


def test_drop_coverage_note_and_round_trip() -> None:
    report = DataReport()
    report.drop("prescriptions: NDC blank", 3, "no NDC", source="PRESCRIPTIONS.csv", examples=["line 2", "line 9"])
    report.drop("ignored", 0, "nothing happened")
    report.drop("visits: no medications", 2, "empty", examples=[str(i) for i in range(10)])
    report.coverage("ndc->atc3", rows_in=10, rows_mapped=7, codes_in=4, codes_mapped=3, source="map.csv")
    report.note("visits ordered by STARTDATE")
    assert [d.step for d in report.drops] == ["prescriptions: NDC blank", "visits: no medications"]
    assert report.dropped_total == 5
    assert len(report.drops[1].examples) == 5
    payload = json.loads(json.dumps(report.to_json()))
    again = DataReport.from_json(payload)
    assert again == report and again.to_json() == report.to_json()
    text = report.to_markdown()
    assert "| prescriptions: NDC blank | 3 | no NDC | PRESCRIPTIONS.csv | line 2, line 9 |" in text
    assert "| ndc->atc3 | 7 | 10 | 70.0% | 3 | 4 | 75.0% | map.csv |" in text
    assert "- visits ordered by STARTDATE" in text and "Dropped in total: 5" in text


def test_empty_report_and_negative_counts() -> None:
    assert DataReport().to_markdown() == "Nothing was dropped."
    assert DataReport().coverages == [] and DataReport.from_json({}).dropped_total == 0
    with pytest.raises(ValueError, match="must be >= 0"):
        DataReport().drop("x", -1, "bad")


def test_findings_are_counted_logged_and_round_trip(caplog: pytest.LogCaptureFixture) -> None:
    report = DataReport()
    report.finding("DX.csv: zeros", rows=31, codes=2, message="lost zeros", source="DX.csv",
                   examples=["389 -> 0389", "845 -> 00845"])
    report.finding("ignored", rows=0, codes=0, message="nothing")
    assert [(f.step, f.rows, f.codes, f.action) for f in report.findings] == [("DX.csv: zeros", 31, 2, "kept")]
    assert "DX.csv: zeros: lost zeros (31 rows, 2 codes; kept; e.g. 389 -> 0389, 845 -> 00845)" in caplog.text
    assert report.dropped_total == 0
    payload = json.loads(json.dumps(report.to_json()))
    assert payload["findings"][0]["examples"] == ["389 -> 0389", "845 -> 00845"]
    assert DataReport.from_json(payload) == report
    assert "| DX.csv: zeros | 31 | 2 | kept | lost zeros | DX.csv | 389 -> 0389, 845 -> 00845 |" in report.to_markdown()
    with pytest.raises(ValueError, match="finding action must be 'kept' or 'repaired', got 'dropped'"):
        report.finding("x", 1, 1, "m", action="dropped")


def test_reports_without_findings_still_load() -> None:
    assert DataReport.from_json({"drops": [], "coverage": [], "notes": ["n"]}).findings == []
