"""NDC normalisation."""

from __future__ import annotations

import pandas as pd
import pytest

from medtoolkit.knowledge import NdcCounts, normalize_ndc, normalize_ndc_counted


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00006494300", "00006494300"),
        ("  00006494300 ", "00006494300"),
        ("0002-3227-01", "00002322701"),  # 4-4-2
        ("12345-678-90", "12345067890"),  # 5-3-2
        ("12345-6789-1", "12345678901"),  # 5-4-1
        ("12345-6789-01", "12345678901"),  # 5-4-2
        ("0", None),
        ("00000000000", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("abc", None),
        ("0002322701", None),  # undashed 10 digits: ambiguous
        ("123456789012", None),
        ("123-45-6", None),
        ("1234-5678-901", None),
    ],
)
def test_normalize_ndc_cases(raw: str | None, expected: str | None) -> None:
    out = normalize_ndc(pd.Series([raw], dtype=object))
    assert (pd.isna(out.iloc[0]) if expected is None else out.iloc[0] == expected)


def test_counts_and_alignment() -> None:
    values = pd.Series(["0002-3227-01", "0", None, "x12", "00006494300", "1234567890"],
                       index=[10, 11, 12, 13, 14, 15])
    out, counts = normalize_ndc_counted(values)
    assert list(out.index) == list(values.index)
    assert str(out.dtype) == "string"
    assert counts == NdcCounts(rows=6, blank=2, malformed=2, valid=2)


def test_numeric_input_restores_leading_zeros() -> None:
    out, counts = normalize_ndc_counted(pd.Series([6494300.0, 0.0, None, 24987026010.0, 1.5]))
    assert out.tolist()[0] == "00006494300"
    assert out.tolist()[3] == "24987026010"
    assert counts.blank == 2 and counts.malformed == 1
