"""The plugin host: per-plugin attribution, broken plugins, hook checks, entry points, env vars.

Every test builds a fresh :class:`PluginHost` with toy plugins, so nothing depends on the
built-in components (the core plugin is registered too, but toy names never collide with it).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

import medtoolkit
import medtoolkit.plugins
from medtoolkit.components.base import Encoder, Loss, Memory
from medtoolkit.components.params import Params
from medtoolkit.hookspecs import Register
from medtoolkit.plugins import ENTRY_POINT_GROUP, MAX_ERROR, PluginHost, PluginInfo
from medtoolkit.registry import RegistryError, UnknownComponentError


# ---------------------------------------------------------------------------- toy components
class ToyEncoder(Encoder):
    class Params(Params):
        width: int = 4

    @property
    def output_dim(self) -> int:
        return self.params.width

    def forward(self, batch: Any) -> torch.Tensor:
        return torch.zeros(*batch.visit_mask.shape, self.output_dim)


class OtherToyEncoder(ToyEncoder):
    pass


class ToyMemory(Memory):
    class Params(Params):
        pass

    @property
    def output_dim(self) -> int:
        return 1

    def forward(self, query: torch.Tensor, batch: Any) -> torch.Tensor:
        return query[..., :1]


class ToyLoss(Loss):
    class Params(Params):
        weight: float = 1.0

    def forward(self, logits: torch.Tensor, batch: Any) -> torch.Tensor:
        return logits.sum()


# ---------------------------------------------------------------------------- toy plugins
class GoodPlugin:
    @medtoolkit.hookimpl
    def register_encoders(self, register: Register) -> None:
        register("toy_encoder", ToyEncoder)

    @medtoolkit.hookimpl
    def register_memories(self, register: Register) -> None:
        register("toy_memory", ToyMemory)

    @medtoolkit.hookimpl
    def register_presets(self, register: Register) -> None:
        register("toy_preset", {"model": {"type": "toy_recommender"}})


class LossPlugin:
    @medtoolkit.hookimpl
    def register_losses(self, register: Register) -> None:
        register("toy_loss", ToyLoss)


class ClashingPlugin:
    """Registers a fresh loss, then a name GoodPlugin already owns."""

    @medtoolkit.hookimpl
    def register_losses(self, register: Register) -> None:
        register("clash_loss", ToyLoss)

    @medtoolkit.hookimpl
    def register_encoders(self, register: Register) -> None:
        register("toy_encoder", OtherToyEncoder)


class RaisingPlugin:
    """Registers two parts, then its hook raises."""

    @medtoolkit.hookimpl
    def register_encoders(self, register: Register) -> None:
        register("half_encoder", OtherToyEncoder)

    @medtoolkit.hookimpl
    def register_losses(self, register: Register) -> None:
        register("half_loss", ToyLoss)
        raise RuntimeError("boom")


class WrongBasePlugin:
    @medtoolkit.hookimpl
    def register_encoders(self, register: Register) -> None:
        register("not_an_encoder", ToyMemory)


class MisspelledHookPlugin:
    @medtoolkit.hookimpl
    def register_losses(self, register: Register) -> None:
        register("typo_loss", ToyLoss)

    @medtoolkit.hookimpl
    def register_encoder(self, register: Register) -> None:  # singular: no such hook
        register("typo_encoder", OtherToyEncoder)


class UndecoratedPlugin:
    def register_encoders(self, register: Register) -> None:  # forgot @medtoolkit.hookimpl
        register("undecorated_encoder", OtherToyEncoder)


class WrongArgumentPlugin:
    @medtoolkit.hookimpl
    def register_encoders(self, registrar: Register) -> None:
        registrar("wrong_arg_encoder", OtherToyEncoder)


def make_host(*plugins: tuple[str, str, Any]) -> PluginHost:
    return PluginHost(load_entry_points=False, extra_plugins=plugins)


def info(host: PluginHost, name: str) -> PluginInfo:
    (found,) = [p for p in host.plugins if p.name == name]
    return found


# ---------------------------------------------------------------------------- attribution
def test_core_is_the_first_plugin() -> None:
    host = make_host()
    assert host.plugins[0].name == "medtoolkit"
    assert host.plugins[0].version == medtoolkit.__version__
    assert host.plugins[0].module == "medtoolkit.builtins"


def test_every_entry_is_attributed_to_its_plugin_and_version() -> None:
    host = make_host(("medtoolkit-good", "1.0", GoodPlugin()), ("medtoolkit-loss", "2.5", LossPlugin()))
    encoder = host.registry("encoder").get("toy_encoder")
    loss = host.registry("loss").get("toy_loss")
    assert (encoder.plugin, encoder.version) == ("medtoolkit-good", "1.0")
    assert (loss.plugin, loss.version) == ("medtoolkit-loss", "2.5")
    assert host.registry("preset").get("toy_preset").plugin == "medtoolkit-good"
    good = info(host, "medtoolkit-good")
    assert good.status == "ok"
    assert good.registered == {"encoder": ["toy_encoder"], "memory": ["toy_memory"], "preset": ["toy_preset"]}
    assert info(host, "medtoolkit-loss").registered == {"loss": ["toy_loss"]}
    assert host.get("encoder", "toy_encoder") is ToyEncoder


def test_plugin_info_to_json_has_no_traceback() -> None:
    host = make_host(("medtoolkit-loss", "2.5", LossPlugin()))
    assert info(host, "medtoolkit-loss").to_json() == {
        "name": "medtoolkit-loss",
        "version": "2.5",
        "module": "LossPlugin",
        "status": "ok",
        "error": "",
        "registered": {"loss": ["toy_loss"]},
    }


def test_hosts_are_independent() -> None:
    first = make_host(("medtoolkit-loss", "1", LossPlugin()))
    second = make_host()
    assert "toy_loss" in first.registry("loss")
    assert "toy_loss" not in second.registry("loss")


def test_add_plugin_at_run_time() -> None:
    host = make_host()
    added = host.add_plugin("notebook", "0", LossPlugin())
    assert added.status == "ok"
    assert host.registry("loss").get("toy_loss").plugin == "notebook"


def test_unknown_kind_and_unknown_name() -> None:
    host = make_host(("medtoolkit-good", "1.0", GoodPlugin()))
    with pytest.raises(RegistryError, match="unknown component kind 'encoders'; kinds: dataset, task, encoder"):
        host.registry("encoders")
    with pytest.raises(UnknownComponentError, match="Did you mean 'toy_encoder'"):
        host.get("encoder", "toy_encodr")


# ---------------------------------------------------------------------------- broken plugins
def test_duplicate_name_breaks_the_second_plugin_and_rolls_it_back() -> None:
    host = make_host(("medtoolkit-good", "1.0", GoodPlugin()), ("medtoolkit-clash", "0.3", ClashingPlugin()))
    clash = info(host, "medtoolkit-clash")
    assert clash.status == "broken"
    assert clash.error.startswith("registration failed: DuplicateComponentError: ")
    assert "by medtoolkit-good 1.0 and by medtoolkit-clash 0.3" in clash.error
    assert clash.registered == {}
    assert "clash_loss" not in host.registry("loss")  # registered before the clash, rolled back
    assert host.get("encoder", "toy_encoder") is ToyEncoder  # the first owner keeps its name
    assert info(host, "medtoolkit-good").status == "ok"
    assert clash in host.broken and info(host, "medtoolkit-good") not in host.broken


def test_plugin_whose_hook_raises_is_rolled_back_and_others_still_register() -> None:
    raising = RaisingPlugin()
    host = make_host(("medtoolkit-raising", "0.1", raising), ("medtoolkit-loss", "1", LossPlugin()))
    broken = info(host, "medtoolkit-raising")
    assert broken.status == "broken"
    assert broken.error == "registration failed: RuntimeError: boom"
    assert "Traceback" in broken.details and "boom" in broken.details
    assert "half_encoder" not in host.registry("encoder")
    assert "half_loss" not in host.registry("loss")
    assert not host.manager.is_registered(raising)
    assert host.get("loss", "toy_loss") is ToyLoss


def test_wrong_base_class_marks_the_plugin_broken() -> None:
    host = make_host(("medtoolkit-wrongbase", "1", WrongBasePlugin()))
    broken = info(host, "medtoolkit-wrongbase")
    assert broken.status == "broken"
    assert "InvalidComponentError" in broken.error
    assert "must be a subclass of medtoolkit.components.base.Encoder" in broken.error


def test_check_pending_catches_a_misspelled_hook() -> None:
    plugin = MisspelledHookPlugin()
    host = make_host(("medtoolkit-typo", "1", plugin), ("medtoolkit-loss", "1", LossPlugin()))
    broken = info(host, "medtoolkit-typo")
    assert broken.status == "broken"
    assert "PluginValidationError" in broken.error
    assert "register_encoder" in broken.error
    assert not host.manager.is_registered(plugin)
    assert "typo_loss" not in host.registry("loss")  # none of its hooks ran
    assert info(host, "medtoolkit-loss").status == "ok"  # a later plugin is not blamed for it


def test_hook_with_wrong_argument_names_is_broken() -> None:
    host = make_host(("medtoolkit-wrongarg", "1", WrongArgumentPlugin()))
    broken = info(host, "medtoolkit-wrongarg")
    assert broken.status == "broken"
    assert "registrar" in broken.error
    assert "wrong_arg_encoder" not in host.registry("encoder")


def test_hook_without_hookimpl_marker_is_broken_not_silently_ignored() -> None:
    host = make_host(("medtoolkit-undecorated", "1", UndecoratedPlugin()))
    broken = info(host, "medtoolkit-undecorated")
    assert broken.status == "broken"
    assert broken.error == (
        "PluginValidationError: register_encoders of UndecoratedPlugin not decorated with @medtoolkit.hookimpl"
    )


class BadCommandPlugin:
    @medtoolkit.hookimpl
    def register_commands(self, register: Register) -> None:
        register("hello", object)  # no add_arguments / run: would break the whole command line


def test_malformed_command_breaks_its_plugin_not_the_command_line() -> None:
    from medtoolkit.cli import build_parser

    host = make_host(("medtoolkit-badcommand", "1", BadCommandPlugin()))
    broken = info(host, "medtoolkit-badcommand")
    assert broken.status == "broken"
    assert "command 'hello' from plugin 'medtoolkit-badcommand' must have add_arguments and run" in broken.error
    parser = build_parser(host)
    assert parser.parse_args(["plugins"]).command == "plugins"


def test_registering_the_same_plugin_name_twice_is_broken_not_fatal() -> None:
    host = make_host(("medtoolkit-loss", "1", LossPlugin()), ("medtoolkit-loss", "1", GoodPlugin()))
    assert [p.status for p in host.plugins if p.name == "medtoolkit-loss"] == ["ok", "broken"]
    assert "toy_encoder" not in host.registry("encoder")


# ---------------------------------------------------------------------------- entry points
@dataclass(frozen=True)
class FakeDistribution:
    name: str
    version: str


@dataclass
class FakeEntryPoint:
    """Quacks like :class:`importlib.metadata.EntryPoint` (name, value, group, dist, load)."""

    name: str
    value: str
    dist: FakeDistribution | None
    loader: Callable[[], Any]
    group: str = ENTRY_POINT_GROUP
    loaded: int = 0

    def load(self) -> Any:
        self.loaded += 1
        return self.loader()


def _raise_import_error() -> Any:
    raise ImportError("No module named 'torch_scatter'")


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeEntryPoint]:
    """Three installed plugins: a good one, one that fails to import, one for another group."""
    points = {
        "good": FakeEntryPoint(
            "good", "medtoolkit_good", FakeDistribution("medtoolkit-good", "1.4.0"), GoodPlugin
        ),
        "broken": FakeEntryPoint(
            "broken", "medtoolkit_broken", FakeDistribution("medtoolkit-broken", "0.0.1"), _raise_import_error
        ),
        "loss": FakeEntryPoint("loss", "medtoolkit_loss", None, LossPlugin),
        "other": FakeEntryPoint("other", "x", None, GoodPlugin, group="pytest11"),
    }

    def fake_entry_points(**selection: str) -> list[FakeEntryPoint]:
        assert selection == {"group": ENTRY_POINT_GROUP}
        return [p for p in points.values() if p.group == selection["group"]]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    monkeypatch.delenv("MEDTOOLKIT_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("MEDTOOLKIT_DISABLE_PLUGINS", raising=False)
    return points


def test_entry_points_load_one_at_a_time_and_a_failing_import_is_broken(
    entry_points: dict[str, FakeEntryPoint],
) -> None:
    host = PluginHost()
    assert [p.name for p in host.plugins] == ["medtoolkit", "medtoolkit-broken", "medtoolkit-good", "loss"]
    broken = info(host, "medtoolkit-broken")
    assert (broken.status, broken.version, broken.module) == ("broken", "0.0.1", "medtoolkit_broken")
    assert broken.error == "import failed: ImportError: No module named 'torch_scatter'"
    assert "Traceback" in broken.details
    good = host.registry("encoder").get("toy_encoder")
    assert (good.plugin, good.version) == ("medtoolkit-good", "1.4.0")
    # an entry point without distribution metadata is named after the entry point
    assert (host.registry("loss").get("toy_loss").plugin, info(host, "loss").version) == ("loss", "")
    assert entry_points["other"].loaded == 0


@pytest.mark.parametrize("value", ["medtoolkit-good", "good", " medtoolkit-good , unrelated "])
def test_disable_plugins_by_distribution_or_entry_point_name(
    entry_points: dict[str, FakeEntryPoint], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MEDTOOLKIT_DISABLE_PLUGINS", value)
    host = PluginHost()
    disabled = info(host, "medtoolkit-good")
    assert (disabled.status, disabled.error) == ("disabled", "disabled by MEDTOOLKIT_DISABLE_PLUGINS")
    assert disabled.version == "1.4.0"
    assert entry_points["good"].loaded == 0  # never imported
    assert "toy_encoder" not in host.registry("encoder")
    assert info(host, "loss").status == "ok"
    assert disabled not in host.broken


def test_disabling_a_broken_plugin_skips_its_import(
    entry_points: dict[str, FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDTOOLKIT_DISABLE_PLUGINS", "medtoolkit-broken")
    host = PluginHost()
    assert info(host, "medtoolkit-broken").status == "disabled"
    assert "medtoolkit-broken" not in [p.name for p in host.broken]
    assert entry_points["broken"].loaded == 0


def test_load_plugins_is_an_allow_list(
    entry_points: dict[str, FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDTOOLKIT_LOAD_PLUGINS", "medtoolkit-good")
    host = PluginHost()
    statuses = {p.name: (p.status, p.error) for p in host.plugins if p.name != "medtoolkit"}
    assert statuses == {
        "medtoolkit-good": ("ok", ""),
        "medtoolkit-broken": ("disabled", "not in MEDTOOLKIT_LOAD_PLUGINS"),
        "loss": ("disabled", "not in MEDTOOLKIT_LOAD_PLUGINS"),
    }
    assert entry_points["broken"].loaded == 0 and entry_points["loss"].loaded == 0
    assert host.get("encoder", "toy_encoder") is ToyEncoder


def test_disable_wins_over_load(entry_points: dict[str, FakeEntryPoint], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDTOOLKIT_LOAD_PLUGINS", "medtoolkit-good,loss")
    monkeypatch.setenv("MEDTOOLKIT_DISABLE_PLUGINS", "loss")
    host = PluginHost()
    assert info(host, "loss").error == "disabled by MEDTOOLKIT_DISABLE_PLUGINS"
    assert info(host, "medtoolkit-good").status == "ok"


@pytest.mark.parametrize("variable", ["MEDTOOLKIT_LOAD_PLUGINS", "MEDTOOLKIT_DISABLE_PLUGINS"])
def test_plugin_names_in_env_are_normalized(
    entry_points: dict[str, FakeEntryPoint], monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """``pip`` treats ``medtoolkit_good`` and ``Medtoolkit.Good`` as ``medtoolkit-good``; so do we."""
    monkeypatch.setenv(variable, "Medtoolkit_Good")
    host = PluginHost()
    expected = "ok" if variable == "MEDTOOLKIT_LOAD_PLUGINS" else "disabled"
    assert info(host, "medtoolkit-good").status == expected


def test_no_entry_points_without_load_entry_points(entry_points: dict[str, FakeEntryPoint]) -> None:
    host = make_host()
    assert [p.name for p in host.plugins] == ["medtoolkit"]
    assert all(point.loaded == 0 for point in entry_points.values())


# ---------------------------------------------------------------------------- built-ins (need the full core)
def test_core_plugin_registers_the_builtins() -> None:
    host = make_host()
    core = info(host, "medtoolkit")
    assert core.status == "ok", core.details
    assert {"synthetic", "safedrug_pickle"} <= set(core.registered["dataset"])
    assert "gru" in core.registered["encoder"]
    assert "gcn" in core.registered["memory"]
    assert {"bce", "ddi", "multilabel_margin"} <= set(core.registered["loss"])
    assert {"gamenet", "previous_visit"} <= set(core.registered["recommender"])
    assert host.registry("encoder").get("gru").plugin == "medtoolkit"


# ---------------------------------------------------------------------------- plugins cannot take the CLI down
def _noisy_plugin() -> Any:
    print("medtoolkit-noisy: importing, please wait")
    return NoisyPlugin()


class NoisyPlugin:
    @medtoolkit.hookimpl
    def register_losses(self, register: Register) -> None:
        print("medtoolkit-noisy: registering")
        register("noisy_loss", ToyLoss)


def _add_entry_point(points: dict[str, FakeEntryPoint], name: str, loader: Callable[[], Any]) -> None:
    points[name] = FakeEntryPoint(name, f"medtoolkit_{name}", FakeDistribution(f"medtoolkit-{name}", "0.1"), loader)


def test_what_a_plugin_prints_goes_to_stderr(
    entry_points: dict[str, FakeEntryPoint], capsys: pytest.CaptureFixture[str]
) -> None:
    _add_entry_point(entry_points, "noisy", _noisy_plugin)
    host = PluginHost()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "medtoolkit-noisy: importing, please wait\nmedtoolkit-noisy: registering\n"
    assert info(host, "medtoolkit-noisy").registered == {"loss": ["noisy_loss"]}


def test_plugins_json_stays_json_with_a_noisy_plugin(
    entry_points: dict[str, FakeEntryPoint], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from medtoolkit.cli import main

    _add_entry_point(entry_points, "noisy", _noisy_plugin)
    monkeypatch.setattr(medtoolkit.plugins, "default_host", PluginHost)
    assert main(["plugins", "--json"]) == 0
    captured = capsys.readouterr()
    statuses = {plugin["name"]: plugin["status"] for plugin in json.loads(captured.out)}
    assert statuses["medtoolkit-noisy"] == "ok" and statuses["medtoolkit-broken"] == "broken"
    assert "medtoolkit-noisy: importing, please wait" in captured.err


def _exits() -> Any:
    raise SystemExit(3)


def _interrupts() -> Any:
    raise KeyboardInterrupt


def _long_error() -> Any:
    raise ImportError("first line\n" + "x" * 500)


class ExitingPlugin:
    @medtoolkit.hookimpl
    def register_losses(self, register: Register) -> None:
        register("exit_loss", ToyLoss)
        raise SystemExit("bye")


def test_system_exit_at_import_marks_the_plugin_broken(entry_points: dict[str, FakeEntryPoint]) -> None:
    _add_entry_point(entry_points, "exits", _exits)
    host = PluginHost()
    broken = info(host, "medtoolkit-exits")
    assert (broken.status, broken.error) == ("broken", "import failed: SystemExit: 3")
    assert "SystemExit" in broken.details
    assert info(host, "medtoolkit-good").status == "ok"


def test_system_exit_in_a_hook_marks_the_plugin_broken() -> None:
    host = make_host(("medtoolkit-exiting", "1", ExitingPlugin()), ("medtoolkit-loss", "1", LossPlugin()))
    broken = info(host, "medtoolkit-exiting")
    assert (broken.status, broken.error) == ("broken", "registration failed: SystemExit: bye")
    assert "exit_loss" not in host.registry("loss")
    assert info(host, "medtoolkit-loss").status == "ok"


def test_keyboard_interrupt_raised_by_a_plugin_at_import_marks_it_broken(
    entry_points: dict[str, FakeEntryPoint], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plugin that raises KeyboardInterrupt itself (no SIGINT arrived) cannot take the CLI down."""
    from medtoolkit.cli import main

    _add_entry_point(entry_points, "interrupts", _interrupts)
    host = PluginHost()
    broken = info(host, "medtoolkit-interrupts")
    assert (broken.status, broken.error) == ("broken", "import failed: KeyboardInterrupt")
    assert info(host, "medtoolkit-good").status == "ok"
    monkeypatch.setattr(medtoolkit.plugins, "default_host", PluginHost)
    assert main(["plugins", "--json"]) == 0
    statuses = {p["name"]: p["status"] for p in json.loads(capsys.readouterr().out)}
    assert statuses["medtoolkit-interrupts"] == "broken"


class InterruptingPlugin:
    @medtoolkit.hookimpl
    def register_losses(self, register: Register) -> None:
        register("interrupt_loss", ToyLoss)
        raise KeyboardInterrupt


def test_keyboard_interrupt_raised_by_a_hook_marks_the_plugin_broken() -> None:
    host = make_host(("medtoolkit-interrupting", "1", InterruptingPlugin()))
    broken = info(host, "medtoolkit-interrupting")
    assert (broken.status, broken.error) == ("broken", "registration failed: KeyboardInterrupt")
    assert "interrupt_loss" not in host.registry("loss")


def _real_ctrl_c() -> Any:
    import signal

    os.kill(os.getpid(), signal.SIGINT)  # the user pressing Ctrl-C while the plugin imports
    time.sleep(1)
    raise AssertionError("SIGINT was not delivered")


def test_a_real_ctrl_c_while_a_plugin_imports_stops_the_command(
    entry_points: dict[str, FakeEntryPoint], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    _add_entry_point(entry_points, "slow", _real_ctrl_c)
    # a shell starts background jobs with SIGINT ignored (Ctrl-C is then ignored on purpose):
    # run this test with Python's own handler whatever the environment inherited
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_while_importing(monkeypatch, capsys)
    finally:
        signal.signal(signal.SIGINT, inherited)


def _interrupt_while_importing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import signal

    from medtoolkit.cli import main

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        PluginHost()
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored
    monkeypatch.setattr(medtoolkit.plugins, "default_host", PluginHost)
    assert main(["plugins"]) == 130
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "error: interrupted\n")


def _writes_to_fd_1() -> Any:
    os.write(1, b"raw fd output\n")
    print("dunder stdout", file=sys.__stdout__, flush=True)
    return GoodPlugin


def test_output_written_to_file_descriptor_1_at_import_goes_to_stderr(
    entry_points: dict[str, FakeEntryPoint], capfd: pytest.CaptureFixture[str]
) -> None:
    _add_entry_point(entry_points, "rawfd", _writes_to_fd_1)
    PluginHost()
    captured = capfd.readouterr()
    assert "raw fd output" not in captured.out and "dunder stdout" not in captured.out
    assert "raw fd output" in captured.err


def _escape_codes() -> Any:
    raise ImportError("\x1b[2J\x1b]0;pwned\x07boom")


def test_a_broken_plugins_reason_has_no_control_characters(entry_points: dict[str, FakeEntryPoint]) -> None:
    _add_entry_point(entry_points, "escapes", _escape_codes)
    broken = info(PluginHost(), "medtoolkit-escapes")
    assert broken.error == "import failed: ImportError: ?[2J?]0;pwned?boom"


def test_a_damaged_entry_point_listing_is_one_broken_record(monkeypatch: pytest.MonkeyPatch) -> None:
    def damaged(**selection: str) -> Any:
        raise ValueError("bad entry_points.txt\nline 2")

    monkeypatch.setattr(importlib.metadata, "entry_points", damaged)
    host = PluginHost()
    assert [(p.name, p.status, p.error) for p in host.plugins[1:]] == [
        ("(entry points)", "broken", "cannot list installed plugins: ValueError: bad entry_points.txt line 2")
    ]
    assert host.registry("recommender")  # the built-ins are still there


def test_a_broken_plugins_reason_is_one_line_of_at_most_200_characters(
    entry_points: dict[str, FakeEntryPoint],
) -> None:
    _add_entry_point(entry_points, "long", _long_error)
    host = PluginHost()
    broken = info(host, "medtoolkit-long")
    assert broken.error == ("import failed: ImportError: first line " + "x" * 500)[:197] + "..."
    assert len(broken.error) == MAX_ERROR == 200
    assert "x" * 500 in broken.details  # the whole message is kept with the traceback


def test_plugins_debug_prints_the_full_traceback_of_broken_plugins(
    entry_points: dict[str, FakeEntryPoint], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from medtoolkit.cli import main

    _add_entry_point(entry_points, "long", _long_error)
    monkeypatch.setattr(medtoolkit.plugins, "default_host", PluginHost)
    assert main(["plugins", "--json"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert main(["plugins", "--json", "--debug"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)  # stdout stays JSON
    assert "--- medtoolkit-long 0.1: import failed: ImportError: first line" in captured.err
    assert "Traceback (most recent call last):" in captured.err and "x" * 500 in captured.err


def test_a_distribution_without_name_or_version_is_listed_not_a_crash(
    entry_points: dict[str, FakeEntryPoint], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from medtoolkit.cli import main

    nameless = FakeDistribution(None, None)  # type: ignore[arg-type]
    entry_points["nameless"] = FakeEntryPoint("nameless", "medtoolkit_nameless", nameless, LossPlugin)
    monkeypatch.setattr(medtoolkit.plugins, "default_host", PluginHost)
    assert main(["plugins"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("nameless"))
    assert row.split()[:2] == ["nameless", "broken"]  # LossPlugin's names are taken by "loss": still listed


def test_an_unknown_run_name_says_which_plugins_the_environment_kept_out(
    entry_points: dict[str, FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    from medtoolkit.experiment import resolve_raw_config

    monkeypatch.setenv("MEDTOOLKIT_DISABLE_PLUGINS", "good")
    monkeypatch.setenv("MEDTOOLKIT_LOAD_PLUGINS", "good,broken")
    host = PluginHost()
    note = ("(plugins disabled by MEDTOOLKIT_DISABLE_PLUGINS: medtoolkit-good; "
            "plugins not in MEDTOOLKIT_LOAD_PLUGINS: loss)")
    assert host.not_loaded_note() == note
    with pytest.raises(FileNotFoundError) as unknown:
        resolve_raw_config("toy_run", host)
    presets = ", ".join(host.registry("preset").names())
    assert str(unknown.value) == f"'toy_run' is neither a run file nor a preset; presets: {presets} {note}"


def test_no_note_when_every_plugin_may_load(entry_points: dict[str, FakeEntryPoint]) -> None:
    from medtoolkit.experiment import resolve_raw_config

    host = PluginHost()
    assert host.not_loaded_note() == ""  # a broken plugin is not kept out by the environment
    with pytest.raises(FileNotFoundError) as unknown:
        resolve_raw_config("toy_run", host)
    assert str(unknown.value).endswith(f"presets: {', '.join(host.registry('preset').names())}")
