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
