"""One-line error messages of the command line (:mod:`medtoolkit.errors`)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from medtoolkit.config import ConfigError, ConfigValidationError
from medtoolkit.errors import DEBUG_HINT, MAX_MESSAGE, error_details, error_message, is_expected
from medtoolkit.registry import UnknownComponentError


class Width(BaseModel):
    width: int


def test_os_errors_name_their_file_first() -> None:
    assert error_message(NotADirectoryError(20, "Not a directory", "runs/x/metrics.json"), "run.yaml") == (
        "runs/x/metrics.json: Not a directory"
    )
    assert error_message(FileExistsError(17, "File exists", "out")) == "out: File exists"
    assert error_message(OSError(28, "No space left on device"), "runs/x") == "runs/x: No space left on device"


def test_messages_written_for_users_are_kept_as_they_are() -> None:
    assert error_message(FileNotFoundError("run file not found: a.yaml"), "a.yaml") == "run file not found: a.yaml"
    assert error_message(ValueError("cannot resume: the config differs"), "run.yaml") == (
        "cannot resume: the config differs"
    )
    unknown = UnknownComponentError("unknown loss 'bcee'. Did you mean 'bce'?")
    assert error_message(unknown, "run.yaml") == "unknown loss 'bcee'. Did you mean 'bce'?"


def test_vague_errors_get_their_type_and_the_subject() -> None:
    assert error_message(KeyError("model"), "runs/x") == "runs/x: KeyError: 'model'"
    assert error_message(MemoryError(), "runs/x") == "runs/x: out of memory (MemoryError)"
    assert error_message(pickle.UnpicklingError("invalid load key, 'x'."), "d.pkl") == (
        "d.pkl: UnpicklingError: invalid load key, 'x'."
    )
    assert error_message(KeyError("runs/x/a.pt"), "runs/x") == "KeyError: 'runs/x/a.pt'"  # names it already


def test_bugs_point_at_debug() -> None:
    assert error_message(AttributeError("'list' object has no attribute 'get'"), "runs/x") == (
        f"runs/x: AttributeError: 'list' object has no attribute 'get' ({DEBUG_HINT})"
    )
    assert error_message(NotImplementedError(), None) == f"NotImplementedError ({DEBUG_HINT})"
    assert not is_expected(NotImplementedError()) and not is_expected(TypeError())
    assert is_expected(RecursionError()) and is_expected(RuntimeError()) and is_expected(MemoryError())


def test_yaml_and_pydantic_errors_are_one_line() -> None:
    with pytest.raises(yaml.YAMLError) as yaml_error:
        yaml.safe_load("a: [1,\nb")
    text = error_message(yaml_error.value, "run.yaml")
    assert text.startswith("run.yaml: ParserError: while parsing a flow sequence")
    assert "\n" not in text and is_expected(yaml_error.value)
    with pytest.raises(ValueError) as invalid:
        Width(width="x")  # type: ignore[arg-type]
    assert error_message(invalid.value) == (
        "invalid Width: width: Input should be a valid integer, unable to parse string as an integer"
    )


def test_long_and_multi_line_messages_are_collapsed_and_capped() -> None:
    assert error_message(ValueError("first\n   second")) == "first second"
    capped = error_message(ValueError("x" * 2000))
    assert len(capped) == MAX_MESSAGE and capped.endswith("...")


def test_a_config_validation_error_lists_its_mistakes_before_one_error_line() -> None:
    error = ConfigValidationError([ConfigError("model.x", "unknown key 'x'"), ConfigError("seed", "not an int")],
                                  "run.yaml")
    assert error_details(error) == "  - model.x: unknown key 'x'\n  - seed: not an int"
    assert error_message(error, "run.yaml") == "run.yaml: 2 errors (listed above)"


def test_a_config_validation_error_with_one_mistake_is_one_line() -> None:
    error = ConfigValidationError([ConfigError("seed", "not an int")], "run.yaml")
    assert error_details(error) == ""
    assert error_message(error, "run.yaml") == "run.yaml: seed: not an int"


def test_a_config_error_quoting_a_multi_line_yaml_error_is_one_line() -> None:
    error = ConfigValidationError([ConfigError("", "invalid YAML (line 2, column 1): while parsing\n  in x\n    ^")],
                                  "run.yaml")
    assert error_message(error) == "run.yaml: <root>: invalid YAML (line 2, column 1): while parsing in x ^"


def test_detail_lines_stay_one_line_per_mistake() -> None:
    error = ConfigValidationError([ConfigError("a", "first\nsecond"), ConfigError("b", "third")], "run.yaml")
    assert error_details(error).splitlines() == ["  - a: first second", "  - b: third"]
    assert error_message(error) == "run.yaml: 2 errors (listed above)"


def test_safe_pickle_errors_name_their_file_and_are_printed_as_they_are(tmp_path: Path) -> None:
    from medtoolkit.data.safe_pickle import PickleBudgetError, PickleTooLargeError, UnsafePickleError, safe_load

    for kind in (UnsafePickleError, PickleTooLargeError, PickleBudgetError):
        error = kind("refusing to load /data/records.pkl: it is too large")
        assert error_message(error, "safedrug_pickle") == "refusing to load /data/records.pkl: it is too large"
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"x not a pickle")
    with pytest.raises(pickle.UnpicklingError) as raised:
        safe_load(corrupt)
    assert error_message(raised.value, "safedrug_pickle") == (
        f"cannot read {corrupt} as a pickle: UnpicklingError: invalid load key, 'x'."
    )


def test_pydantic_errors_do_not_echo_the_input_or_the_help_url() -> None:
    with pytest.raises(ValueError) as invalid:
        Width(width="secret-value")  # type: ignore[arg-type]
    text = error_message(invalid.value, "run.yaml")
    assert "input_value" not in text and "secret-value" not in text and "errors.pydantic.dev" not in text
    assert "For further information" not in text
