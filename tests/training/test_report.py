"""Run reports: the markdown metrics table, ``report.md`` and the training-curve PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medtoolkit.training.report import (
    MISSING,
    curve_data,
    curves_figure,
    curves_title,
    format_best_epochs,
    format_metric,
    format_molecules,
    groups_figure,
    groups_table,
    metrics_table,
    plot_curves,
    plot_groups,
    render_report,
    selection_metric,
    stages_table,
)

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
        "data": {"name": "mimic3", "patients": 60, "visits": 146, "n_drugs": 12,
                 "ground_truth_ddi_rate": 0.0993031},
        "protocol": {"name": "random", "splits": ["seed0"], "averaging": "patient", "bootstrap_rounds": 10,
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


@pytest.mark.parametrize("value", [None, {"mean": None, "std": None}, {"mean": float("nan"), "std": 0.0}])
def test_missing_metric_values_read_na(value: dict[str, Any] | None) -> None:
    assert format_metric(value) == MISSING == "n/a"
    table = metrics_table({"jaccard": {"mean": 0.5, "std": 0.0}, "ddi_rate": value})
    assert table.splitlines()[-1] == "| DDI rate | n/a |"


def test_format_best_epochs() -> None:
    assert format_best_epochs({"legacy": 12}) == "12"
    assert format_best_epochs({"seed0": 3, "seed1": None}) == "3 (seed0), n/a (seed1)"
    assert format_best_epochs({}) == "n/a"
    assert format_best_epochs(None) == "n/a"
    assert format_best_epochs({"seed0": 36}, {"seed0": 40}) == "36 of 40"
    assert format_best_epochs({"seed0": 3, "seed1": 9}, {"seed0": 15, "seed1": 15}) == "3 of 15 (seed0), 9 of 15 (seed1)"


def test_metrics_table_without_title_starts_with_the_header() -> None:
    table = metrics_table({"f1": {"mean": 0.5, "std": 0.25}})
    assert table == "| metric | mean ± std |\n|---|---|\n| F1 | 0.5000 ± 0.2500 |\n"


def test_render_report_contents() -> None:
    text = render_report(metrics())
    lines = text.splitlines()
    assert lines[0] == "# tiny-gamenet"
    assert lines[2] == "`gamenet` on `mimic3`, protocol `random` (1 split: seed0)"
    assert lines[4] == "Test metrics: mean ± std over 10 bootstrap rounds, each drawing 80% of the test patients."
    assert "| Jaccard | 0.5235 ± 0.0012 |" in lines
    assert "- model: `gamenet`, parameters: 1,234,567" in lines
    assert "- dataset: `mimic3`: 60 patients, 146 visits, 12 drugs, ground-truth DDI rate 0.0993" in lines
    assert "- scoring: metrics averaged per patient; a drug is recommended at probability 0.5 or more" in lines
    assert "- epochs: 3, mean epoch time 2.00 s" in lines
    assert "- best epoch: 2" in lines
    assert "- wall time: 12.3 s; device: cpu" in lines
    assert "- peak memory: 322 MB" in lines
    assert "- data fingerprint: `0123456789abcdef`" in lines
    assert "{" not in text  # no Python dict repr anywhere


def test_render_report_names_every_split_and_its_best_epoch() -> None:
    protocol = {**metrics()["protocol"], "splits": ["seed0", "seed1"]}
    text = render_report(metrics(protocol=protocol, best_epochs={"seed0": 12, "seed1": 30}))
    assert "`gamenet` on `mimic3`, protocol `random` (2 splits: seed0, seed1)" in text
    assert "- epochs: 3 in all over 2 splits, mean epoch time 2.00 s" in text
    assert "- best epoch: 12 (seed0), 30 (seed1)" in text
    assert ("Test metrics: mean ± std over the 2 splits (each split's value: the mean of 10 bootstrap rounds, "
            "each drawing 80% of its test patients).") in text


def test_render_report_names_the_test_set_size_and_large_counts_with_separators() -> None:
    test = {**TEST, "n_patients": 1671, "n_visits": 2140}
    data = {**metrics()["data"], "patients": 10020, "visits": 12600}
    text = render_report(metrics(test=test, data=data))
    assert ("Test metrics (1,671 test patients, 2,140 visits): mean ± std over 10 bootstrap rounds, each drawing "
            "80% of the test patients.") in text
    assert "- dataset: `mimic3`: 10,020 patients, 12,600 visits, 12 drugs" in text


def test_render_report_without_bootstrap_says_the_test_set_was_scored_once() -> None:
    protocol = {**metrics()["protocol"], "bootstrap_rounds": 0}
    text = render_report(metrics(protocol=protocol))
    assert "Test metrics: scored once on all test patients (std 0)." in text


def test_render_report_best_epoch_reads_of_how_many_and_by_what() -> None:
    histories = {"seed0": {**history([0.9, 0.5, 0.4], [0.2, 0.35, 0.3], best=2), "best_score": 0.35}}
    text = render_report(metrics(history=histories, epoch_seconds=[0.1, 0.1, 0.1]))
    assert "- best epoch: 2 of 3 (highest validation Jaccard)\n" in text


def test_render_report_legacy_protocol() -> None:
    protocol = {**metrics()["protocol"], "name": "legacy", "splits": ["legacy"]}
    text = render_report(metrics(protocol=protocol, best_epochs={"legacy": 12}))
    assert "`gamenet` on `mimic3`, protocol `legacy` (1 split: legacy)" in text
    assert "- best epoch: 12\n" in text


def test_render_report_writes_missing_values_as_na() -> None:
    test = {**TEST, "ddi_rate": None}
    data = {**metrics()["data"], "ground_truth_ddi_rate": None}
    text = render_report(metrics(test=test, data=data, best_epochs={"seed0": None}))
    assert "| DDI rate | n/a |" in text
    assert "ground-truth DDI rate n/a" in text
    assert "- best epoch: n/a" in text
    assert "None" not in text


def test_render_report_leaves_out_what_a_run_did_not_produce() -> None:
    text = render_report(metrics(epoch_seconds=[], wall_seconds=None, peak_memory_mb=None, data_fingerprint=""))
    assert "- epochs:" not in text and "wall time" not in text
    assert "peak memory" not in text and "fingerprint" not in text
    assert "| Jaccard | 0.5235 ± 0.0012 |" in text


def history(losses: list[float], jaccards: list[float] | None, ddi: list[float | None] | None = None,
            best: int | None = 1) -> dict[str, Any]:
    epochs = []
    for i, loss in enumerate(losses):
        validation: dict[str, Any] = {"jaccard": jaccards[i]} if jaccards is not None else {}
        if ddi is not None:
            validation["ddi_rate"] = ddi[i]
        epochs.append({"epoch": i + 1, "train_loss": loss, "seconds": 0.1, "validation": validation})
    return {"epochs": epochs, "best_epoch": best}


@pytest.mark.parametrize(
    "histories",
    [
        {"seed0": history([0.9, 0.5, 0.4], [0.2, 0.3, 0.35], [0.05, 0.06, 0.07], best=3)},
        {"seed0": history([0.9, 0.5], [0.2, 0.3]), "seed1": history([0.8, 0.6, 0.5], [0.1, 0.2, 0.2])},
        {"seed0": history([0.9, 0.5], None, best=None)},  # no validation set
        {"seed0": history([0.9, 0.5], [0.2, 0.3], [None, None])},  # no DDI matrix
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
    assert curves_figure({"seed0": {"epochs": [], "best_epoch": None}}) is None


def test_curve_data_takes_loss_validation_jaccard_and_ddi_and_skips_missing_values() -> None:
    curves = curve_data({"seed0": history([0.9, 0.5, 0.4], [0.2, float("nan"), 0.35], [0.05, None, 0.07], best=3)})
    item = curves["seed0"]
    assert (item.epochs, item.train_loss) == ([1, 2, 3], [0.9, 0.5, 0.4])
    assert (item.val_epochs, item.val_jaccard) == ([1, 3], [0.2, 0.35])
    assert (item.val_ddi_epochs, item.val_ddi_rate) == ([1, 3], [0.05, 0.07])
    assert item.best_epoch == 3


def _scored(item: dict[str, Any], score: float) -> dict[str, Any]:
    return {**item, "best_score": score}


def test_selection_metric_is_read_off_the_best_score() -> None:
    h = history([0.9, 0.5, 0.4], [0.2, 0.35, 0.3], best=2)
    h["epochs"][1]["validation"].update(prauc=0.6, f1=0.5)
    assert selection_metric({"seed0": _scored(h, 0.35)}) == "jaccard"
    assert selection_metric({"seed0": _scored(h, 0.6)}) == "prauc"
    assert selection_metric({"seed0": _scored(h, 0.5)}) == "f1"
    assert selection_metric({"seed0": _scored(h, -0.5)}) == "loss"
    assert selection_metric({"seed0": _scored(h, 0.123)}) is None  # matches nothing
    assert selection_metric({"seed0": h}) is None  # no best_score
    assert selection_metric({}) is None and selection_metric(None) is None
    other = _scored(history([0.9, 0.6], [0.5, 0.1], best=1), -0.9)  # a split that selected by loss
    assert selection_metric({"seed0": _scored(h, 0.35), "seed1": other}) is None


def test_curves_title_names_model_dataset_and_protocol() -> None:
    assert curves_title(metrics()) == "tiny-gamenet: gamenet on mimic3, protocol random"
    assert curves_title(metrics(name="gamenet")) == "gamenet on mimic3, protocol random"


def _legend_texts(figure: Any) -> list[str]:
    (legend,) = figure.legends
    return [t.get_text() for t in legend.get_texts()]


def _vertical_lines(axis: Any) -> list[float]:
    """x positions of the vertical lines (axvline) drawn on an axis."""
    xs = []
    for line in axis.get_lines():
        x = list(line.get_xdata())
        if len(x) == 2 and x[0] == x[1] and list(line.get_ydata()) == [0, 1]:
            xs.append(float(x[0]))
    return xs


def test_curves_figure_draws_validation_ddi_and_marks_the_best_epoch() -> None:
    import matplotlib.pyplot as plt

    histories = {"seed0": _scored(history([0.9, 0.5, 0.4], [0.2, 0.3, 0.35], [0.05, 0.06, 0.07], best=2), 0.3)}
    figure = curves_figure(histories, title="gamenet on mimic3, protocol random")
    assert figure is not None
    try:
        axes = figure.get_axes()
        assert [a.get_title() for a in axes] == ["training loss", "validation Jaccard", "validation DDI rate"]
        assert [a.get_xlabel() for a in axes] == ["epoch"] * 3
        assert [a.get_ylabel() for a in axes] == ["loss", "Jaccard", "DDI rate"]
        assert figure.get_suptitle() == "gamenet on mimic3, protocol random"
        # one legend for the figure, outside the panels
        assert all(axis.get_legend() is None for axis in axes)
        assert _legend_texts(figure) == ["split seed0", "best epoch 2, highest validation Jaccard"]
        for axis in axes:
            assert _vertical_lines(axis) == [2.0]
        ddi_lines = [line for line in axes[2].get_lines() if list(line.get_ydata()) != [0, 1]]
        assert [list(line.get_ydata()) for line in ddi_lines] == [[0.05, 0.06, 0.07]]
    finally:
        plt.close(figure)


def test_curves_figure_leaves_out_the_ddi_panel_without_ddi_values() -> None:
    import matplotlib.pyplot as plt

    figure = curves_figure({"seed0": history([0.9, 0.5], [0.2, 0.3], [None, None], best=None)})
    assert figure is not None
    try:
        axes = figure.get_axes()
        assert [a.get_title() for a in axes] == ["training loss", "validation Jaccard"]
        assert all(_vertical_lines(a) == [] for a in axes)  # no best epoch, no line
    finally:
        plt.close(figure)


def test_curves_figure_marks_each_splits_best_epoch() -> None:
    import matplotlib.pyplot as plt

    figure = curves_figure({
        "seed0": history([0.9, 0.5, 0.4], [0.2, 0.3, 0.2], best=2),
        "seed1": history([0.8, 0.6, 0.5], [0.1, 0.2, 0.3], best=3),
    })
    assert figure is not None
    try:
        loss_axis = figure.get_axes()[0]
        assert sorted(_vertical_lines(loss_axis)) == [2.0, 3.0]
        assert _legend_texts(figure) == ["split seed0", "best epoch 2 (seed0)", "split seed1", "best epoch 3 (seed1)"]
    finally:
        plt.close(figure)


def tracked_history() -> dict[str, Any]:
    """Two epochs of a controllable DDI term (beta, ddi_rate, target) and a BCE term that tracked nothing."""
    item = history([0.9, 0.5, 0.4], [0.2, 0.3, 0.35], [0.05, 0.06, 0.07], best=2)
    item["epochs"][0]["losses"] = {"0.controllable_ddi": {"beta": 0.9, "ddi_rate": 0.08, "target": 0.06}}
    item["epochs"][1]["losses"] = {"0.controllable_ddi": {"beta": 1.0, "ddi_rate": None, "target": 0.06}}
    # epoch 3 written before values were tracked: no "losses"
    return item


def test_curve_data_takes_the_tracked_loss_values_and_their_targets() -> None:
    item = curve_data({"seed0": tracked_history()})["seed0"]
    assert list(item.tracked) == ["0.controllable_ddi beta", "0.controllable_ddi ddi_rate"]
    assert (item.tracked["0.controllable_ddi beta"].epochs, item.tracked["0.controllable_ddi beta"].values) == (
        [1, 2], [0.9, 1.0])
    # a missing value is left out; the target is not a series
    assert (item.tracked["0.controllable_ddi ddi_rate"].epochs,
            item.tracked["0.controllable_ddi ddi_rate"].values) == ([1], [0.08])
    assert item.targets == {"0.controllable_ddi": 0.06}
    plain = curve_data({"seed0": history([0.9], [0.2])})["seed0"]
    assert plain.tracked == {} and plain.targets == {}


def test_curves_figure_draws_the_loss_terms_panel_with_a_target_line() -> None:
    import matplotlib.pyplot as plt

    figure = curves_figure({"seed0": tracked_history()})
    assert figure is not None
    try:
        axes = figure.get_axes()
        assert [a.get_title() for a in axes] == ["training loss", "validation Jaccard", "validation DDI rate",
                                                 "loss terms (training)"]
        panel = axes[3]
        assert _vertical_lines(panel) == [2.0]  # the best epoch, as on every panel
        drawn = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()), line.get_linestyle())
                 for line in panel.get_lines() if list(line.get_ydata()) != [0, 1]}
        assert drawn == {
            "0.controllable_ddi beta": ([1, 2], [0.9, 1.0], "-"),
            "0.controllable_ddi ddi_rate": ([1], [0.08], "-"),
            "0.controllable_ddi target 0.06": ([0, 1], [0.06, 0.06], "--"),
        }
        lines = {line.get_label(): line for line in panel.get_lines()}
        assert lines["0.controllable_ddi target 0.06"].get_color() == lines["0.controllable_ddi ddi_rate"].get_color()
        assert [t.get_text() for t in panel.get_legend().get_texts()] == [
            "0.controllable_ddi beta", "0.controllable_ddi ddi_rate", "0.controllable_ddi target 0.06"]
        # the figure's legend below the panels is unchanged
        assert _legend_texts(figure) == ["split seed0", "best epoch 2"]
    finally:
        plt.close(figure)


def test_curves_figure_names_the_split_of_each_loss_term_line_with_several_splits() -> None:
    import matplotlib.pyplot as plt

    figure = curves_figure({"seed0": tracked_history(), "seed1": tracked_history()})
    assert figure is not None
    try:
        panel = figure.get_axes()[-1]
        assert [t.get_text() for t in panel.get_legend().get_texts()] == [
            "0.controllable_ddi beta (seed0)", "0.controllable_ddi ddi_rate (seed0)",
            "0.controllable_ddi target 0.06 (seed0)", "0.controllable_ddi beta (seed1)",
            "0.controllable_ddi ddi_rate (seed1)", "0.controllable_ddi target 0.06 (seed1)"]
        styles = {line.get_label(): line.get_linestyle() for line in panel.get_lines()}
        assert (styles["0.controllable_ddi beta (seed0)"], styles["0.controllable_ddi beta (seed1)"]) == ("-", ":")
    finally:
        plt.close(figure)


def test_curves_figure_has_no_loss_terms_panel_without_tracked_values() -> None:
    import matplotlib.pyplot as plt

    item = history([0.9, 0.5], [0.2, 0.3], [0.05, 0.06])
    for record in item["epochs"]:
        record["losses"] = {}  # what the trainer writes when no term tracks anything
    item["epochs"][0]["losses"] = {"1.ddi": {"target": 0.06}}  # a target alone draws nothing
    figure = curves_figure({"seed0": item})
    assert figure is not None
    try:
        assert [a.get_title() for a in figure.get_axes()] == ["training loss", "validation Jaccard",
                                                              "validation DDI rate"]
    finally:
        plt.close(figure)


def test_plot_curves_writes_a_png_with_the_loss_terms_panel(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    assert plot_curves({"seed0": tracked_history()}, path, title="t") is True
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_render_report_counts_the_molecules_and_their_failures() -> None:
    summary = {"drugs": 131, "molecules": 190, "atoms": 3012, "bonds": 3200, "failed": 2,
               "drugs_without_molecules": 3, "explicit_hydrogens": False, "substructures": 491}
    data = {**metrics()["data"], "molecules": summary}
    assert ("- molecules: 131 drugs, 190 molecules (3,012 atoms, 3,200 bonds); 2 SMILES rdkit could not parse; "
            "3 drugs without a parsed molecule; 491 substructures") in render_report(metrics(data=data)).splitlines()
    only_mask = {**metrics()["data"], "molecules": {"substructures": 12}}
    assert "- molecules: 12 substructures" in render_report(metrics(data=only_mask)).splitlines()
    for without in ({**metrics()["data"], "molecules": None}, metrics()["data"]):
        assert "molecules" not in render_report(metrics(data=without))


def test_format_molecules_without_counts_is_na() -> None:
    assert format_molecules({"explicit_hydrogens": True}) == MISSING


def test_render_report_takes_the_selection_metric_from_the_protocol() -> None:
    protocol = {**metrics()["protocol"], "select_metric": "prauc"}
    text = render_report(metrics(protocol=protocol))
    assert "- best epoch: 2 (highest validation PRAUC)" in text.splitlines()


def test_render_report_lists_the_training_statistics() -> None:
    from medtoolkit.training.report import format_statistics

    summary = {"code_counts/medications": [131], "pair_counts/diagnoses/medications": [1958, 131]}
    assert format_statistics(summary) == ("`code_counts/medications` [131], "
                                          "`pair_counts/diagnoses/medications` [1958 x 131]")
    assert format_statistics({}) == MISSING
    data = {**metrics()["data"], "statistics": summary}
    assert ("- training statistics: `code_counts/medications` [131], `pair_counts/diagnoses/medications` "
            "[1958 x 131]") in render_report(metrics(data=data)).splitlines()
    for without in ({**metrics()["data"], "statistics": None}, metrics()["data"]):
        assert "statistics" not in render_report(metrics(data=without))


def test_selection_by_loss_reads_the_validation_loss() -> None:
    h = history([0.9, 0.5, 0.4], [0.2, 0.35, 0.3], best=2)
    h["epochs"][1]["validation"]["loss"] = 0.75
    assert selection_metric({"seed0": _scored(h, -0.75)}) == "loss"
    assert selection_metric({"seed0": _scored(h, -0.5)}) is None  # the training loss no longer counts
    text = render_report(metrics(history={"seed0": _scored(h, -0.75)}, epoch_seconds=[0.1, 0.1, 0.1]))
    assert "- best epoch: 2 of 3 (lowest validation loss)\n" in text


# ---------------------------------------------------------------------------------- groups
def _bin(bounds: str, hospitals: Any, prauc: Any, jaccard: Any, f1: Any) -> dict[str, Any]:
    return {"bounds": bounds, "hospitals": hospitals, "prauc": prauc, "jaccard": jaccard, "f1": f1,
            "ddi_rate": None}


GROUPS = {
    "by": "hospital", "bins": [1000, 2000],
    "per_group": {
        "73": {"index": 0, "size": 400, "n_test": 40, "jaccard": 0.40, "prauc": 0.5, "f1": 0.55},
        "264": {"index": 1, "size": 900, "n_test": 90, "jaccard": 0.44, "prauc": 0.6, "f1": 0.6},
        "420": {"index": 2, "size": 1500, "n_test": 150, "jaccard": 0.50, "prauc": 0.65, "f1": 0.66},
        "7": {"index": 3, "size": 4000, "n_test": 400, "jaccard": None, "prauc": 0.7, "f1": 0.7},
    },
    "per_bin": {
        "small": _bin("<=1000", 2, 0.55, 0.42, 0.575),
        "medium": _bin("1001-2000", 1, 0.65, 0.5, 0.66),
        "large": _bin(">2000", 1, 0.7, None, 0.7),
        "all": _bin("all", 4, 0.625, 0.44666, 0.6325),
    },
}


def _combined_groups() -> dict[str, Any]:
    def ms(mean: float | None, std: float | None = 0.0) -> dict[str, Any]:
        return {"mean": mean, "std": None if mean is None else std}

    per_bin = {
        "small": _bin("<=1000", ms(2), ms(0.55, 0.01), ms(0.42, 0.02), ms(0.575, 0.005)),
        "medium": _bin("1001-2000", ms(1.5, 0.5), ms(0.65), ms(0.5), ms(0.66)),
        "large": _bin(">2000", ms(1), ms(0.7), ms(None), ms(0.7)),
        "all": _bin("all", ms(4), ms(0.625), ms(0.44666), ms(0.6325)),
    }
    return {"by": "hospital", "bins": [1000, 2000], "per_bin": per_bin}


def test_groups_table_one_split() -> None:
    lines = groups_table({**TEST, "groups": GROUPS}).splitlines()
    assert lines[0] == "| group | records per hospital | hospitals | PRAUC | Jaccard | F1 |"
    assert lines[2] == "| small | <=1000 | 2 | 0.5500 | 0.4200 | 0.5750 |"
    assert lines[4] == "| large | >2000 | 1 | 0.7000 | n/a | 0.7000 |"
    assert lines[5] == "| all | all | 4 | 0.6250 | 0.4467 | 0.6325 |"
    assert len(lines) == 6
    assert groups_table(TEST) == ""


def test_groups_table_several_splits_reads_mean_plus_minus_std() -> None:
    lines = groups_table({**TEST, "groups": _combined_groups()}).splitlines()
    assert lines[2] == "| small | <=1000 | 2 | 0.5500 ± 0.0100 | 0.4200 ± 0.0200 | 0.5750 ± 0.0050 |"
    assert lines[3] == "| medium | 1001-2000 | 1.5 ± 0.5 | 0.6500 ± 0.0000 | 0.5000 ± 0.0000 | 0.6600 ± 0.0000 |"
    assert lines[4] == "| large | >2000 | 1 | 0.7000 ± 0.0000 | n/a | 0.7000 ± 0.0000 |"


def test_render_report_has_a_groups_section_only_with_groups() -> None:
    text = render_report(metrics(test={**TEST, "groups": GROUPS}))
    assert "## Hospital-size groups" in text
    assert "| small | <=1000 | 2 | 0.5500 | 0.4200 | 0.5750 |" in text
    assert "then the hospitals of a group are averaged." in text
    assert "## Hospital-size groups" not in render_report(metrics())
    assert "{" not in text and "None" not in text


STAGES = [
    {"name": "pretrain", "repeat_per": None, "init_from": None, "adapter": None, "units": 1, "trained_units": 1,
     "skipped_units": [], "trainable_params": 1_200_000, "total_params": 1_200_000, "trainable_share": 1.0,
     "select_metric": "loss", "best_epochs": {"all": 12}, "seconds": 95.25},
    {"name": "tune", "repeat_per": "hospital", "init_from": "pretrain", "adapter": {"type": "hospital_prompt"},
     "units": 100, "trained_units": 98, "skipped_units": ["12", "40"], "trainable_params": 24_000,
     "total_params": 1_224_000, "trainable_share": 0.019608, "select_metric": "prauc", "best_epochs": {},
     "seconds": 130.0},
]


def test_stages_table() -> None:
    lines = stages_table(STAGES).splitlines()
    assert lines[0] == ("| stage | repeat per | units trained / skipped | trainable params | share | seconds "
                        "| selected by |")
    assert lines[2] == ("| `pretrain` | - | 1 / 0 | 1,200,000 of 1,200,000 | 100.00% | 95.2 "
                        "| lowest validation loss |")
    assert lines[3] == ("| `tune` (adapter `hospital_prompt`, from `pretrain`) | hospital | 98 / 2 "
                        "| 24,000 of 1,224,000 | 1.96% | 130.0 | highest validation PRAUC |")
    assert stages_table([]) == ""
    assert stages_table([{"name": "x"}]).splitlines()[2] == "| `x` | - | ? / 0 | ? | n/a | n/a | n/a |"


def test_render_report_has_a_stages_section_for_staged_runs() -> None:
    text = render_report(metrics(stages=STAGES))
    assert "## Stages" in text and "| `tune` (adapter `hospital_prompt`, from `pretrain`) | hospital |" in text
    assert "## Stages" not in render_report(metrics())


def test_groups_figure_draws_each_hospital_the_bounds_and_the_bin_means() -> None:
    import matplotlib.pyplot as plt

    figure = groups_figure({**TEST, "groups": GROUPS})
    assert figure is not None
    axis = figure.axes[0]
    assert axis.get_xscale() == "log"
    (points,) = axis.collections[:1]
    assert sorted(map(tuple, points.get_offsets().tolist())) == [(400, 0.4), (900, 0.44), (1500, 0.5)]
    assert sorted(_vertical_lines(axis)) == [1000, 2000]
    means = sorted(round(float(c.get_segments()[0][0][1]), 4) for c in axis.collections[1:])
    assert means == [0.42, 0.5]  # small and medium; large has no Jaccard
    plt.close(figure)


def test_groups_figure_of_several_splits_draws_each_split() -> None:
    import matplotlib.pyplot as plt

    test = {**TEST, "groups": _combined_groups(),
            "splits": {"seed0": {"groups": GROUPS}, "seed1": {"groups": GROUPS}}}
    figure = groups_figure(test)
    assert figure is not None
    assert set(_legend_texts_of(figure.axes[0])) == {"split seed0", "split seed1"}
    plt.close(figure)


def _legend_texts_of(axis: Any) -> list[str]:
    legend = axis.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_plot_groups_writes_a_png_only_with_groups(tmp_path: Path) -> None:
    path = tmp_path / "groups.png"
    assert plot_groups({**TEST, "groups": GROUPS}, path)
    assert path.read_bytes().startswith(PNG_MAGIC)
    other = tmp_path / "none.png"
    assert not plot_groups(TEST, other) and not other.exists()
