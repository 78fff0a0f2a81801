"""Run reports: the markdown metrics table, ``report.md`` and the training-curve PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medtoolkit.training.report import format_metric, metrics_table, plot_curves, render_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TEST = {
    # deliberately not in report order, with an extra non-metric key
    "avg_drugs": {"mean": 14.25, "std": 0.5},
    "jaccard": {"mean": 0.523456, "std": 0.0012344},
    "ddi_rate": {"mean": 0.07999, "std": 0.00012},
    "prauc": {"mean": 0.7, "std": 0.0},
    "rounds": [],
}


def metrics(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "tiny-gamenet",
        "model": "gamenet",
        "test": TEST,
        "n_params": 1234567,
        "epoch_seconds": [1.0, 2.0, 3.0],
        "best_epochs": {"seed0": 2},
        "data": {"patients": 60, "visits": 146, "n_drugs": 12, "ground_truth_ddi_rate": 0.0993031},
        "protocol": {"name": "random", "averaging": "patient", "bootstrap_rounds": 10,
                     "bootstrap_fraction": 0.8, "threshold": 0.5},
        "wall_seconds": 12.345,
        "device": "cpu",
        "peak_memory_mb": 321.7,
        "data_fingerprint": "0123456789abcdef" + "f" * 48,
    }
    base.update(overrides)
    return base


def test_format_metric_is_mean_plus_minus_std_with_four_decimals() -> None:
    assert format_metric({"mean": 0.523456, "std": 0.0012344}) == "0.5235 ± 0.0012"
    assert format_metric({"mean": 14.25, "std": 0.5}) == "14.2500 ± 0.5000"


def test_metrics_table_rows_follow_the_report_order() -> None:
    table = metrics_table(TEST, title="run (gamenet) - test")
    assert table.splitlines() == [
        "### run (gamenet) - test",
        "",
        "| metric | mean ± std |",
        "|---|---|",
        "| Jaccard | 0.5235 ± 0.0012 |",
        "| PRAUC | 0.7000 ± 0.0000 |",
        "| DDI rate | 0.0800 ± 0.0001 |",
        "| Avg # drugs | 14.2500 ± 0.5000 |",
    ]
    assert table.endswith("\n")


def test_metrics_table_without_title_starts_with_the_header() -> None:
    table = metrics_table({"f1": {"mean": 0.5, "std": 0.25}})
    assert table == "| metric | mean ± std |\n|---|---|\n| F1 | 0.5000 ± 0.2500 |\n"


def test_render_report_contents() -> None:
    text = render_report(metrics())
    lines = text.splitlines()
    assert lines[0] == "# tiny-gamenet"
    assert "| Jaccard | 0.5235 ± 0.0012 |" in lines
    assert "- model: `gamenet`, parameters: 1,234,567" in lines
    assert "- data: 60 patients, 146 visits, 12 drugs, ground-truth DDI rate 0.0993" in lines
    assert ("- protocol: random; averaging per patient; 10 bootstrap rounds of 0.8 of test patients; "
            "threshold 0.5") in lines
    assert "- epochs: 3, mean epoch time 2.00 s, best epoch {'seed0': 2}" in lines
    assert "- wall time: 12.3 s; device: cpu" in lines
    assert "- peak memory: 322 MB" in lines
    assert "- data fingerprint: `0123456789abcdef`" in lines


def test_render_report_leaves_out_what_a_run_did_not_produce() -> None:
    text = render_report(metrics(epoch_seconds=[], wall_seconds=None, peak_memory_mb=None, data_fingerprint=""))
    assert "- epochs:" not in text and "wall time" not in text
    assert "peak memory" not in text and "fingerprint" not in text
    assert "| Jaccard | 0.5235 ± 0.0012 |" in text


def history(losses: list[float], jaccards: list[float] | None) -> dict[str, Any]:
    epochs = []
    for i, loss in enumerate(losses):
        validation = {"jaccard": jaccards[i]} if jaccards is not None else {}
        epochs.append({"epoch": i + 1, "train_loss": loss, "seconds": 0.1, "validation": validation})
    return {"epochs": epochs, "best_epoch": 1}


@pytest.mark.parametrize(
    "histories",
    [
        {"seed0": history([0.9, 0.5, 0.4], [0.2, 0.3, 0.35])},
        {"seed0": history([0.9, 0.5], [0.2, 0.3]), "seed1": history([0.8, 0.6, 0.5], [0.1, 0.2, 0.2])},
        {"seed0": history([0.9, 0.5], None)},  # no validation set
    ],
)
def test_plot_curves_writes_a_png(tmp_path: Path, histories: dict[str, Any]) -> None:
    path = tmp_path / "curves.png"
    assert plot_curves(histories, path) is True
    content = path.read_bytes()
    assert content.startswith(PNG_MAGIC) and len(content) > 1000


def test_plot_curves_without_epochs_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    assert plot_curves({"seed0": {"epochs": [], "best_epoch": None}}, path) is False
    assert not path.exists()
