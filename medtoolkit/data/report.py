"""What a loader did to the raw data: every drop counted, every mapping's coverage measured.

A :class:`DataReport` travels with the processed data (``EHRData.provenance["report"]``
holds :meth:`DataReport.to_json`) so that ``medtoolkit data info`` and run records can show
exactly how many rows were removed, where and why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: how many example values a drop keeps
MAX_EXAMPLES = 5

logger = logging.getLogger("medtoolkit.data")


@dataclass
class Drop:
    """Rows (or visits, patients, codes) removed by one processing step.

    Attributes:
        step: the processing step (``"prescriptions: NDC"``, ``"visits: min_visits"``, ...).
        count: how many items were removed.
        reason: why, in words.
        source: the file or table the items came from (may be empty).
        examples: a few example values (ids, codes, ``file:line``).
    """

    step: str
    count: int
    reason: str
    source: str = ""
    examples: list[str] = field(default_factory=list)


@dataclass
class Finding:
    """A suspicious pattern in the data that was detected and kept or repaired (not dropped).

    Attributes:
        step: where it was found (``"DIAGNOSES_ICD.csv: ICD9_CODE"``).
        rows: rows affected.
        codes: distinct values affected.
        message: what was found and what was done, in words.
        action: ``"kept"`` (left as written) or ``"repaired"``.
        source: the file or table (may be empty).
        examples: a few examples (``"389 -> 0389"``).
    """

    step: str
    rows: int
    codes: int
    message: str
    action: str = "kept"
    source: str = ""
    examples: list[str] = field(default_factory=list)


@dataclass
class Coverage:
    """How much of a column a code mapping (NDC -> ATC, ...) could translate.

    Attributes:
        step: the mapping (``"NDC -> ATC3"``).
        rows_in: rows offered to the mapping.
        rows_mapped: rows that received a code.
        codes_in: distinct source codes offered.
        codes_mapped: distinct source codes that received a code.
        source: the file or table mapped.
    """

    step: str
    rows_in: int
    rows_mapped: int
    codes_in: int
    codes_mapped: int
    source: str = ""

    @property
    def row_fraction(self) -> float:
        """Fraction of rows mapped (1.0 when there were none)."""
        return self.rows_mapped / self.rows_in if self.rows_in else 1.0

    @property
    def code_fraction(self) -> float:
        """Fraction of distinct codes mapped (1.0 when there were none)."""
        return self.codes_mapped / self.codes_in if self.codes_in else 1.0


@dataclass
class DataReport:
    """Drops, mapping coverage, findings and notes collected while a dataset is built.

    Attributes:
        drops: removed items, in the order the steps ran.
        coverages: code-mapping coverage, in the order the mappings ran.
        notes: free-form remarks (e.g. how visits were ordered).
        findings: suspicious data kept or repaired (e.g. ICD codes that lost leading zeros).
    """

    drops: list[Drop] = field(default_factory=list)
    coverages: list[Coverage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def drop(
        self, step: str, count: int, reason: str, source: str = "", examples: Sequence[str] = ()
    ) -> None:
        """Record that ``count`` items were removed by ``step`` (ignored when ``count == 0``)."""
        count = int(count)
        if count < 0:
            raise ValueError(f"drop count must be >= 0, got {count} for step {step!r}")
        if count == 0:
            return
        kept = [str(example) for example in list(examples)[:MAX_EXAMPLES]]
        self.drops.append(Drop(step=step, count=count, reason=reason, source=source, examples=kept))

    def coverage(
        self, step: str, rows_in: int, rows_mapped: int, codes_in: int, codes_mapped: int, source: str = ""
    ) -> None:
        """Record the coverage of one code mapping."""
        self.coverages.append(
            Coverage(step, int(rows_in), int(rows_mapped), int(codes_in), int(codes_mapped), source)
        )

    def finding(
        self, step: str, rows: int, codes: int, message: str, action: str = "kept", source: str = "",
        examples: Sequence[str] = (),
    ) -> None:
        """Record (and log as a warning) a suspicious pattern; ignored when ``rows == 0``.

        Args:
            step: where it was found.
            rows: rows affected.
            codes: distinct values affected.
            message: what was found and what was done.
            action: ``"kept"`` or ``"repaired"``.
            source: the file or table.
            examples: a few examples (at most :data:`MAX_EXAMPLES` are kept).
        """
        if action not in ("kept", "repaired"):
            raise ValueError(f"finding action must be 'kept' or 'repaired', got {action!r}")
        if int(rows) <= 0:
            return
        kept = [str(example) for example in list(examples)[:MAX_EXAMPLES]]
        item = Finding(step, int(rows), int(codes), message, action, source, kept)
        self.findings.append(item)
        logger.warning("%s: %s (%d rows, %d codes; %s; e.g. %s)", step, message, item.rows, item.codes, action,
                       ", ".join(kept))

    def note(self, text: str) -> None:
        """Record a free-form remark."""
        self.notes.append(str(text))

    @property
    def dropped_total(self) -> int:
        """Sum of all drop counts (items of different kinds are added up)."""
        return sum(drop.count for drop in self.drops)

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dictionary (inverse: :meth:`from_json`)."""
        return {
            "drops": [
                {"step": d.step, "count": d.count, "reason": d.reason, "source": d.source, "examples": list(d.examples)}
                for d in self.drops
            ],
            "coverage": [
                {
                    "step": c.step, "rows_in": c.rows_in, "rows_mapped": c.rows_mapped,
                    "codes_in": c.codes_in, "codes_mapped": c.codes_mapped, "source": c.source,
                }
                for c in self.coverages
            ],
            "notes": list(self.notes),
            "findings": [
                {"step": f.step, "rows": f.rows, "codes": f.codes, "message": f.message, "action": f.action,
                 "source": f.source, "examples": list(f.examples)}
                for f in self.findings
            ],
            "dropped_total": self.dropped_total,
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> "DataReport":
        """Rebuild a report from :meth:`to_json` output."""
        report = cls()
        for item in payload.get("drops", []):
            report.drops.append(
                Drop(
                    step=str(item["step"]), count=int(item["count"]), reason=str(item.get("reason", "")),
                    source=str(item.get("source", "")), examples=[str(e) for e in item.get("examples", [])],
                )
            )
        for item in payload.get("coverage", []):
            report.coverages.append(
                Coverage(
                    step=str(item["step"]), rows_in=int(item["rows_in"]), rows_mapped=int(item["rows_mapped"]),
                    codes_in=int(item["codes_in"]), codes_mapped=int(item["codes_mapped"]),
                    source=str(item.get("source", "")),
                )
            )
        report.notes.extend(str(note) for note in payload.get("notes", []))
        for item in payload.get("findings", []):  # absent in reports written before findings existed
            report.findings.append(
                Finding(
                    step=str(item["step"]), rows=int(item["rows"]), codes=int(item["codes"]),
                    message=str(item.get("message", "")), action=str(item.get("action", "kept")),
                    source=str(item.get("source", "")), examples=[str(e) for e in item.get("examples", [])],
                )
            )
        return report

    def to_markdown(self) -> str:
        """Human-readable Markdown: a drops table, a coverage table and the notes."""
        lines: list[str] = []
        if self.drops:
            lines += ["| step | dropped | reason | source | examples |", "|---|---:|---|---|---|"]
            for d in self.drops:
                examples = ", ".join(d.examples)
                lines.append(f"| {d.step} | {d.count:,} | {d.reason} | {d.source} | {examples} |")
            lines.append(f"\nDropped in total: {self.dropped_total:,}")
        else:
            lines.append("Nothing was dropped.")
        if self.coverages:
            lines += [
                "",
                "| mapping | rows mapped | rows | row coverage | codes mapped | codes | code coverage | source |",
                "|---|---:|---:|---:|---:|---:|---:|---|",
            ]
            for c in self.coverages:
                lines.append(
                    f"| {c.step} | {c.rows_mapped:,} | {c.rows_in:,} | {c.row_fraction:.1%} | "
                    f"{c.codes_mapped:,} | {c.codes_in:,} | {c.code_fraction:.1%} | {c.source} |"
                )
        if self.findings:
            lines += ["", "| finding | rows | codes | action | what | source | examples |",
                      "|---|---:|---:|---|---|---|---|"]
            for f in self.findings:
                lines.append(
                    f"| {f.step} | {f.rows:,} | {f.codes:,} | {f.action} | {f.message} | {f.source} | "
                    f"{', '.join(f.examples)} |"
                )
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)
