"""Resource limits on user YAML: depth, expanded nodes and aliases, measured on the event stream."""

from __future__ import annotations

import pytest
import yaml

from medtoolkit.yaml_limits import YAMLLimitError, check_yaml_limits, clip, short_repr


def test_ordinary_documents_pass() -> None:
    check_yaml_limits("seed: 1\nmodel: {type: gamenet, layers: [1, 2]}\nx: &x {a: 1}\ny: *x\n")


def test_depth_is_counted_per_collection() -> None:
    check_yaml_limits("[" * 3 + "]" * 3, max_depth=3)
    with pytest.raises(YAMLLimitError, match=r"^YAML nested deeper than 3 levels \(line 1, column 4\)$"):
        check_yaml_limits("[" * 4 + "]" * 4, max_depth=3)


def test_aliases_count_with_the_depth_they_expand_to() -> None:
    text = "a: &a [[1]]\nb: [*a]\n"  # b expands to 4 levels: mapping, list, a, a's inner list
    check_yaml_limits(text, max_depth=4)
    with pytest.raises(YAMLLimitError, match=r"nested deeper than 3 levels \(aliases expanded\) \(line 2, column 5\)"):
        check_yaml_limits(text, max_depth=3)


def test_aliases_count_as_the_size_of_their_anchor() -> None:
    text = "a: &a [1, 2, 3]\nb: [*a, *a]\n"  # mapping 1 + key 1 + list 4 + key 1 + (list 1 + 4 + 4) = 16
    check_yaml_limits(text, max_nodes=16)
    with pytest.raises(YAMLLimitError, match=r"expands to more than 15 nodes \(aliases expanded\)"):
        check_yaml_limits(text, max_nodes=15)


def test_alias_count_and_cycles_are_limited() -> None:
    with pytest.raises(YAMLLimitError, match=r"^YAML uses more than 2 aliases \(line 2, column 13\)$"):
        check_yaml_limits("x: &x 1\ny: [*x, *x, *x]", max_aliases=2)
    with pytest.raises(YAMLLimitError, match=r"alias \*a refers to a node that contains it"):
        check_yaml_limits("&a [1, *a]")


def test_syntax_errors_are_left_to_yaml() -> None:
    with pytest.raises(yaml.YAMLError):
        check_yaml_limits("a: [1, 2")


def test_short_repr_and_clip() -> None:
    assert short_repr("abc") == "'abc'"
    assert short_repr("x" * 500, limit=5) == "'xxxxx'..."
    assert len(short_repr(list(range(10_000)))) <= 200
    assert clip("abcdef", 5) == "ab..."
    assert clip("abc", 5) == "abc"


def test_short_repr_of_a_huge_integer() -> None:
    assert short_repr(10**5000) == "<an integer of 16,610 bits>"
    assert short_repr(12345) == "12345"


def test_short_repr_survives_hostile_values_inside_containers() -> None:
    deep: list = []
    for _ in range(100_000):  # repr() of this raises RecursionError
        deep = [deep]
    assert short_repr(deep) == "[[[[...]]]]"
    # repr() of an int over 4,300 digits raises ValueError, also inside a container or as a dict key
    assert short_repr([10**5000]) == "[<an integer of 16,610 bits>]"
    assert short_repr({10**5000: 1}) == "{<an integer of 16,610 bits>: 1}"
    assert len(short_repr(["x" * 10_000_000])) <= 200

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert short_repr(Broken()).startswith("<Broken instance at ")
