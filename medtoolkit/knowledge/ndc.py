"""NDC normalisation to MIMIC's 11-digit form (5-4-2 labeler-product-package, no dashes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["NdcCounts", "normalize_ndc", "normalize_ndc_counted"]

_DASHED = r"^(\d{4,5})-(\d{3,4})-(\d{1,2})$"


@dataclass(frozen=True)
class NdcCounts:
    """Counts of one NDC normalisation.

    Attributes:
        rows: number of input values.
        blank: missing, empty or the MIMIC placeholder ``0`` (unknown NDC, not an error).
        malformed: present but not a valid NDC (non-digits, wrong length or segment layout).
        valid: normalised to an 11-digit NDC.
    """

    rows: int
    blank: int
    malformed: int
    valid: int


def normalize_ndc(values: pd.Series) -> pd.Series:
    """NDCs as 11-digit strings without dashes (MIMIC's form); NA when unusable.

    Accepted inputs:

    * 11 digits (``"00006494300"``): kept;
    * dashed 10-digit NDCs in the 4-4-2, 5-3-2 or 5-4-1 layout (``"0002-3227-01"``) and dashed
      11-digit 5-4-2: each segment is zero-padded to 5-4-2 (``"00002322701"``);
    * integer or float dtype (a CSV read without ``dtype=str``): the number is taken as an
      11-digit NDC whose leading zeros were lost and zero-padded back (``6494300 -> "00006494300"``).

    NA is returned for missing, empty/whitespace, ``0`` / ``00000000000`` (MIMIC's "unknown"),
    values with non-digit characters, undashed strings that are not 11 digits (an undashed
    10-digit NDC is ambiguous) and dashed strings with another segment layout.

    Args:
        values: NDC values (strings, or numbers).

    Returns:
        string Series (``dtype="string"``) aligned with ``values``.
    """
    return normalize_ndc_counted(values)[0]


def normalize_ndc_counted(values: pd.Series) -> tuple[pd.Series, NdcCounts]:
    """:func:`normalize_ndc` plus the counts of blank and malformed values.

    Args:
        values: NDC values.

    Returns:
        ``(normalised, counts)``; ``counts.malformed`` are the present, non-placeholder values
        that could not be read as an NDC.
    """
    values = pd.Series(values)
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = pd.to_numeric(values, errors="coerce")
        whole = numbers.notna() & (numbers % 1 == 0) & (numbers >= 0) & (numbers < 1e11)
        text = pd.Series(pd.NA, index=values.index, dtype="string")
        text[whole] = numbers[whole].astype("int64").astype(str).str.zfill(11)
        blank = numbers.isna() | (numbers == 0)
        text[numbers == 0] = pd.NA
        malformed = ~blank & ~whole
        result = text
    else:
        text = values.astype("string").str.strip()
        blank = text.isna() | (text == "") | text.str.fullmatch(r"0+").fillna(False).astype(bool)
        result = pd.Series(pd.NA, index=values.index, dtype="string")
        plain = text.str.fullmatch(r"\d{11}").fillna(False).astype(bool) & ~blank
        result[plain] = text[plain]
        has_dash = text.str.contains("-", regex=False).fillna(False).astype(bool) & ~blank
        if has_dash.any():
            p = text[has_dash].str.extract(_DASHED).dropna()
            lengths = p[0].str.len().astype(str) + p[1].str.len().astype(str) + p[2].str.len().astype(str)
            layout_ok = lengths.isin(["442", "532", "541", "542"])
            padded = p[0].str.zfill(5) + p[1].str.zfill(4) + p[2].str.zfill(2)
            ok_index = layout_ok[layout_ok].index
            result[ok_index] = padded[ok_index]
        # an all-zero dashed value is also the placeholder
        zero = result.str.fullmatch(r"0{11}").fillna(False).astype(bool)
        blank = blank | zero
        result[zero] = pd.NA
        malformed = ~blank & result.isna()
    counts = NdcCounts(
        rows=int(len(values)),
        blank=int(np.asarray(blank, dtype=bool).sum()),
        malformed=int(np.asarray(malformed, dtype=bool).sum()),
        valid=int(result.notna().sum()),
    )
    return result.astype("string"), counts
