"""Shared run steps: the resume key and the combination of several splits.

Training, scoring and report writing through these steps are covered end to end by
``tests/test_experiment.py`` (config runs) and ``tests/test_fit.py`` (Python runs).
"""

from __future__ import annotations

import json

import pytest

from medtoolkit.training.pipeline import METRIC_KEYS, combine_splits, resume_key

CONFIG = {"name": "r", "seed": 1, "device": "cuda", "model": {"type": "gamenet"},
          "trainer": {"epochs": 5, "lr": 0.1, "early_stopping_patience": 2, "progress": "bar", "num_threads": 2}}


def test_resume_key_leaves_out_the_device_and_how_long_to_train() -> None:
    assert json.loads(resume_key(CONFIG)) == {"name": "r", "seed": 1, "model": {"type": "gamenet"},
                                              "trainer": {"lr": 0.1}}
    longer = {**CONFIG, "device": "cpu", "trainer": {**CONFIG["trainer"], "epochs": 50, "progress": "none"}}
    assert resume_key(longer) == resume_key(CONFIG)
    assert resume_key({**CONFIG, "trainer": {**CONFIG["trainer"], "lr": 0.2}}) != resume_key(CONFIG)


def test_one_split_is_its_own_result_and_several_are_averaged() -> None:
    one = {key: {"mean": 0.5, "std": 0.1} for key in METRIC_KEYS}
    assert combine_splits({"legacy": one}) is one
    other = {key: {"mean": 0.7, "std": 0.0} for key in METRIC_KEYS}
    combined = combine_splits({"seed0": one, "seed1": other})
    assert combined["jaccard"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1)}
    assert combined["splits"] == {"seed0": one, "seed1": other}
