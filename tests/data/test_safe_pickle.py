"""The restricted unpickler: real benchmark files load, pickled code never runs."""

from __future__ import annotations

import collections
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medtoolkit.data.safe_pickle import (
    InertCode,
    InertFunction,
    InertObject,
    PickleTooLargeError,
    UnsafePickleError,
    _check_expansion,
    element_budget,
    safe_load,
    safe_loads,
)

dill = pytest.importorskip("dill")


# ----------------------------------------------------------------------------- opcode helpers
def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _text(value: str) -> bytes:
    raw = value.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def _call(function: bytes, *args: bytes) -> bytes:
    """``function(*args)`` as opcodes."""
    return function + pickle.MARK + b"".join(args) + pickle.TUPLE + pickle.REDUCE


def _stream(body: bytes) -> bytes:
    return pickle.PROTO + b"\x02" + body + pickle.STOP


# ----------------------------------------------------------------------------- real files
def test_benchmark_files_load_like_dill(safedrug_dir: Path) -> None:
    voc = safe_load(safedrug_dir / "voc_final.pkl")
    assert set(voc) == {"diag_voc", "pro_voc", "med_voc"}
    sizes = {key: len(value.idx2word) for key, value in voc.items()}
    assert sizes == {"diag_voc": 1958, "pro_voc": 1430, "med_voc": 112}
    med = voc["med_voc"]
    assert isinstance(med, InertObject) and type(med).__name__ == "Voc"
    assert type(med).__pickled_module__ == "__main__"
    assert set(type(med).__pickled_methods__) == {"__init__", "add_sentence"}
    assert not hasattr(med, "add_sentence")
    assert med.idx2word[0] == "N02B" and med.word2idx["N02B"] == 0
    assert all(med.word2idx[code] == index for index, code in med.idx2word.items())

    ddi = safe_load(safedrug_dir / "ddi_A_final.pkl")
    assert ddi.shape == (112, 112) and ddi.dtype == np.float64
    assert int(np.triu(ddi, 1).sum()) == 337 and np.array_equal(ddi, ddi.T)
    with (safedrug_dir / "ddi_A_final.pkl").open("rb") as handle:
        assert np.array_equal(ddi, dill.load(handle))
    mask = safe_load(safedrug_dir / "ddi_mask_H.pkl")
    assert mask.shape == (112, 442) and int(mask.sum()) == 997

    records = safe_load(safedrug_dir / "records_final.pkl")
    with (safedrug_dir / "records_final.pkl").open("rb") as handle:
        assert records == pickle.load(handle)
    assert len(records) == 6350 and sum(len(p) for p in records) == 15032
    smiles = safe_load(safedrug_dir / "atc3toSMILES.pkl")
    assert len(smiles) == 112 and sum(len(v) for v in smiles.values()) == 269


# ----------------------------------------------------------------------------- attacks
class _Evil:
    """Unpickling this with :func:`pickle.load` would run ``command``."""

    def __init__(self, function: object, *args: object) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.function, self.args


@pytest.mark.parametrize(
    ("make", "refused"),
    [
        (lambda marker: _Evil(os.system, f"touch {marker}"), f"'{os.system.__module__}.system'"),
        (lambda marker: _Evil(eval, f"open({str(marker)!r}, 'w')"), "'builtins.eval'"),
        (lambda marker: _Evil(exec, f"open({str(marker)!r}, 'w')"), "'builtins.exec'"),
        (lambda marker: _Evil(subprocess.call, ["touch", str(marker)]), "'subprocess.call'"),
        (lambda marker: _Evil(Path.touch, Path(marker)), "'pathlib"),
    ],
)
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_reduce_attacks_are_refused_and_never_run(tmp_path: Path, make, refused: str, protocol: int) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "voc_final.pkl"
    path.write_bytes(pickle.dumps(make(marker), protocol=protocol))
    assert not marker.exists()
    with pytest.raises(UnsafePickleError) as caught:
        safe_load(path)
    message = str(caught.value)
    assert message.startswith("refusing to load global")
    assert refused in message and "voc_final.pkl" in message
    assert not marker.exists()


def test_dill_import_module_cannot_reach_os(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    get_system = _call(_global("dill._dill", "_get_attr"),
                       _call(_global("dill._dill", "_import_module"), _text("os")), _text("system"))
    data = _stream(_call(get_system, _text(f"touch {marker}")))
    with pytest.raises(UnsafePickleError, match=r"refusing to load global 'os\.system' from crafted\.pkl"):
        safe_loads(data, source="crafted.pkl")
    assert not marker.exists()


def test_getattr_shim_only_works_on_inert_objects() -> None:
    # builtins.getattr(<dict>, "update") would hand out a bound method of a real object
    data = _stream(_call(_global("builtins", "getattr"), pickle.EMPTY_DICT, _text("update")))
    with pytest.raises(UnsafePickleError, match="only on inert objects"):
        safe_loads(data)
    data = _stream(_call(_global("builtins", "setattr"), pickle.EMPTY_DICT, _text("x"), _text("y")))
    with pytest.raises(UnsafePickleError, match="only inert objects"):
        safe_loads(data)


def test_create_array_requires_numpy_reconstruct() -> None:
    data = _stream(_call(_global("dill._dill", "_create_array"), _global("builtins", "list"),
                         pickle.EMPTY_TUPLE, pickle.NONE, pickle.NONE))
    with pytest.raises(UnsafePickleError, match="not numpy's _reconstruct"):
        safe_loads(data)


def test_inert_class_rejects_special_attributes() -> None:
    make_class = _call(
        _global("dill._dill", "_create_type"),
        _call(_global("dill._dill", "_load_type"), _text("type")),
        _text("Voc"),
        pickle.MARK + _call(_global("dill._dill", "_load_type"), _text("object")) + pickle.TUPLE,
        pickle.EMPTY_DICT,
    )
    assert safe_loads(_stream(make_class)).__name__ == "Voc"
    set_call = _call(_global("builtins", "setattr"), make_class, _text("__getattr__"),
                     _global("builtins", "len"))
    with pytest.raises(UnsafePickleError, match="special attributes"):
        safe_loads(_stream(set_call))


def test_persistent_ids_are_refused() -> None:
    data = pickle.PROTO + b"\x02" + _text("id") + pickle.BINPERSID + pickle.STOP
    with pytest.raises(UnsafePickleError, match="persistent id"):
        safe_loads(data, source="p.pkl")


# ----------------------------------------------------------------------------- dill by value
def _by_value_class(marker: Path) -> type:
    """A class whose methods would leave ``marker`` behind if any of them ran."""
    marker_path = str(marker)

    def touch(*_: object) -> None:
        os.close(os.open(marker_path, os.O_CREAT | os.O_WRONLY))

    class Voc:
        CONST = 3

        def __init__(self) -> None:
            self.idx2word: dict[int, str] = {}
            self.word2idx: dict[str, int] = {}

        def add_word(self, word: str) -> None:
            touch()
            self.word2idx[word] = len(self.idx2word)
            self.idx2word[len(self.idx2word)] = word

        @property
        def size(self) -> int:
            touch()
            return len(self.idx2word)

        def __setstate__(self, state: dict[str, object]) -> None:
            touch()
            self.__dict__.update(state)

        def __repr__(self) -> str:
            touch()
            return "Voc"

        def __eq__(self, other: object) -> bool:
            touch()
            return True

        __hash__ = None  # type: ignore[assignment]

    # a name dill cannot locate: the class is pickled by value, like SafeDrug's __main__.Voc
    Voc.__module__ = "__main__"
    Voc.__qualname__ = "Voc_not_importable"
    return Voc


@pytest.mark.parametrize("options", [{"byref": False}, {"recurse": True}, {"protocol": 2}])
def test_dill_by_value_class_loads_as_inert_attributes(tmp_path: Path, options: dict) -> None:
    marker = tmp_path / "method-ran"
    voc_class = _by_value_class(marker)
    voc = voc_class.__new__(voc_class)
    voc.__dict__.update(idx2word={0: "N02B", 1: "A01A"}, word2idx={"N02B": 0, "A01A": 1})
    data = dill.dumps({"med_voc": voc}, **options)
    assert b"_create_type" in data and b"_create_code" in data  # really by value, with code
    assert not marker.exists()

    loaded = safe_loads(data, source="voc.pkl")["med_voc"]
    assert isinstance(loaded, InertObject)
    assert loaded.idx2word == {0: "N02B", 1: "A01A"} and loaded.word2idx == {"N02B": 0, "A01A": 1}
    inert = type(loaded)
    assert inert.CONST == 3
    assert {"add_word", "size", "__setstate__", "__repr__", "__eq__", "__init__"} <= set(inert.__pickled_methods__)
    for method in ("add_word", "size", "__setstate__"):
        assert method not in vars(inert)
    assert "inert" in repr(loaded) and loaded != object()
    assert not marker.exists()


def test_pickled_functions_are_inert_and_refuse_calls(tmp_path: Path) -> None:
    marker_path = str(tmp_path / "function-ran")

    def write_marker() -> None:
        os.close(os.open(marker_path, os.O_CREAT | os.O_WRONLY))

    write_marker.__qualname__ = "write_marker_not_importable"  # forces pickling by value
    loaded = safe_loads(dill.dumps(write_marker, byref=False), source="f.pkl")
    assert isinstance(loaded, InertFunction) and loaded.name == "write_marker"
    assert isinstance(loaded.code, InertCode) and "write_marker" in loaded.code.strings
    with pytest.raises(UnsafePickleError, match="was not restored"):
        loaded()
    # a stream that calls the function while loading fails the same way
    body = dill.dumps(write_marker, byref=False, protocol=2)
    assert body.endswith(pickle.STOP)
    with pytest.raises(UnsafePickleError, match="was not restored"):
        safe_loads(body[:-1] + pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.STOP)
    assert not os.path.exists(marker_path)


def test_old_dill_code_objects_become_placeholders() -> None:
    # dill 0.2 (GAMENet, Python 3.6) wrote code as _load_type('CodeType')(...) from dill.dill
    code = _call(
        _call(_global("dill.dill", "_load_type"), _text("CodeType")),
        pickle.BININT1 + b"\x01", pickle.BININT1 + b"\x00", pickle.BININT1 + b"\x02",
        pickle.SHORT_BINBYTES + b"\x02d\x00", pickle.EMPTY_TUPLE, _text("/home/x/train.py"),
        _text("__init__"),
    )
    function = _call(_call(_global("dill.dill", "_load_type"), _text("FunctionType")),
                     code, pickle.EMPTY_DICT, _text("__init__"))
    loaded = safe_loads(_stream(function))
    assert isinstance(loaded, InertFunction) and isinstance(loaded.code, InertCode)
    assert loaded.code.strings == ("/home/x/train.py", "__init__")
    with pytest.raises(UnsafePickleError):
        loaded()


# ----------------------------------------------------------------------------- plain data
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_data_round_trips(protocol: int) -> None:
    point = collections.namedtuple("Point", "x y")
    structured = np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")])
    structured["a"] = [1, 2, 3]
    data = {
        "ints": [1, -2, 3**40], "floats": (1.5, float("inf")), "text": "ATC", "bytes": b"\x00\xff",
        "set": {1, 2}, "frozen": frozenset({"a"}), "none": None, "complex": 1 + 2j,
        "array": np.arange(12, dtype=np.int16).reshape(3, 4).T, "bools": np.array([True, False]),
        "structured": structured, "scalar": np.float32(2.5), "ordered": collections.OrderedDict(b=1, a=2),
        "objects": np.array([1, "a", None], dtype=object),
    }
    loaded = safe_loads(dill.dumps(data, protocol=protocol))
    for key, value in data.items():
        if isinstance(value, np.ndarray):
            assert loaded[key].dtype == value.dtype and np.array_equal(loaded[key], value), key
        else:
            assert loaded[key] == value and type(loaded[key]) is type(value), key
    assert safe_loads(dill.dumps(point(1, 2), byref=False, protocol=protocol)) == (1, 2)


def test_unreadable_files_give_clear_errors(tmp_path: Path) -> None:
    truncated = tmp_path / "records_final.pkl"
    truncated.write_bytes(pickle.dumps(list(range(1000)))[:50])
    with pytest.raises(pickle.UnpicklingError, match="cannot read .*records_final.pkl as a pickle"):
        safe_load(truncated)
    with pytest.raises(FileNotFoundError):
        safe_load(tmp_path / "absent.pkl")


# ----------------------------------------------------------------------------- size bounds
_HOSTILE_RUNNER = """
import json, resource, sys
from medtoolkit.data.safe_pickle import PickleTooLargeError, safe_loads
cases = json.loads(sys.stdin.read())
resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
outcomes = {}
for name, payload in cases.items():
    try:
        safe_loads(bytes.fromhex(payload), source="hostile.pkl")
    except BaseException as error:
        kind = "PickleTooLargeError" if isinstance(error, PickleTooLargeError) else type(error).__name__
        outcomes[name] = f"{kind}: {error}"
    else:
        outcomes[name] = "LOADED"
print(json.dumps(outcomes))
"""


def _run_hostile(cases: dict[str, bytes]) -> dict[str, str]:
    """Load each payload in one child limited to 1.5 GB of address space; one outcome line each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("MEDTOOLKIT_PICKLE_MAX_ELEMENTS", None)
    payload = json.dumps({name: data.hex() for name, data in cases.items()})
    done = subprocess.run([sys.executable, "-c", _HOSTILE_RUNNER], input=payload.encode(),
                          capture_output=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout)


def _long(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(raw)]) + raw


def _shared_reference_bomb(width: int, depth: int) -> bytes:
    """``depth`` nested lists, each holding ``width`` references to the next (memo GETs)."""
    body = pickle.EMPTY_LIST + pickle.BINPUT + b"\x00" + pickle.MARK
    body += (pickle.BININT1 + b"\x07") * width + pickle.APPENDS
    for level in range(1, depth):
        body += pickle.EMPTY_LIST + pickle.BINPUT + bytes([level]) + pickle.MARK
        body += (pickle.BINGET + bytes([level - 1])) * width + pickle.APPENDS
    return _stream(body)


_HOSTILE_CASES = [
        pytest.param(_stream(_call(_global("builtins", "bytearray"), _long(3 * 10**9))),
                     "bytearray(3000000000) exceeds the 33 bytes of the file", id="bytearray"),
        pytest.param(_stream(_call(_global("builtins", "list"),
                                   _call(_global("builtins", "range"), pickle.BININT + struct.pack("<i", 5 * 10**8)))),
                     "list(range of 500000000 items) exceeds the 45 bytes of the file", id="list-range"),
        pytest.param(_stream(_call(_global("builtins", "bytes"), _long(2**40))),
                     "bytes(1099511627776) exceeds", id="bytes"),
        pytest.param(_stream(_call(_global("numpy", "ndarray"),
                                   pickle.MARK + _long(10**10) + pickle.TUPLE)),
                     "numpy.ndarray of shape (10000000000,) (80000000000 bytes) exceeds", id="ndarray"),
        pytest.param(_stream(_call(_global("numpy.core.multiarray", "_reconstruct"), _global("numpy", "ndarray"),
                                   pickle.MARK + _long(10**10) + pickle.TUPLE, pickle.SHORT_BINBYTES + b"\x01b")),
                     "numpy array of shape (10000000000,) (10000000000 bytes) exceeds", id="reconstruct"),
        pytest.param(pickle.PROTO + b"\x04" + pickle.BINBYTES8 + struct.pack("<Q", 2**40) + pickle.STOP,
                     "cannot read hostile.pkl as a pickle: opcode BINBYTES8 at byte 2 declares 1099511627776 "
                     "bytes but only 1 remain", id="binbytes8"),
        pytest.param(pickle.PROTO + b"\x04" + pickle.BINUNICODE8 + struct.pack("<Q", 2**33) + b"ab" + pickle.STOP,
                     "opcode BINUNICODE8 at byte 2 declares 8589934592 bytes but only 3 remain", id="binunicode8"),
        pytest.param(pickle.PROTO + b"\x05" + pickle.BYTEARRAY8 + struct.pack("<Q", 2**35) + pickle.STOP,
                     "opcode BYTEARRAY8 at byte 2 declares 34359738368 bytes", id="bytearray8"),
        pytest.param(pickle.PROTO + b"\x02" + pickle.BINBYTES + struct.pack("<I", 2**32 - 1) + pickle.STOP,
                     "opcode BINBYTES at byte 2 declares 4294967295 bytes but only 1 remain", id="binbytes"),
        pytest.param(pickle.PROTO + b"\x04" + pickle.FRAME + struct.pack("<Q", 2**50) + pickle.STOP,
                     "opcode FRAME at byte 2 declares 1125899906842624 bytes", id="frame"),
        pytest.param(_shared_reference_bomb(1000, 4),
                     "refusing to load hostile.pkl: it expands to more than 10000000 elements", id="shared-refs"),
]


@pytest.fixture(scope="module")
def hostile_outcomes() -> dict[str, str]:
    """Every hostile case loaded once, in a memory-limited child process."""
    return _run_hostile({case.id: case.values[0] for case in _HOSTILE_CASES})


@pytest.mark.parametrize(("data", "expected"), _HOSTILE_CASES)
def test_hostile_sizes_are_refused_within_memory(
    hostile_outcomes: dict[str, str], request: pytest.FixtureRequest, data: bytes, expected: str
) -> None:
    outcome = hostile_outcomes[request.node.callspec.id]
    assert outcome.startswith("PickleTooLargeError: "), outcome
    assert expected in outcome, outcome
    assert "MemoryError" not in outcome


def test_budget_message_names_file_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "records_final.pkl"
    path.write_bytes(_shared_reference_bomb(100, 3))  # 100 + 100 * (100 + 100 * 100) = 1_010_100 elements
    with pytest.raises(PickleTooLargeError) as caught:
        safe_load(path, max_elements=1_010_099)
    message = str(caught.value)
    assert str(path) in message and "MEDTOOLKIT_PICKLE_MAX_ELEMENTS=<count>" in message
    assert "safe_load(..., max_elements=<count>)" in message
    outer = safe_load(path, max_elements=1_010_100)
    assert len(outer) == 100 and outer[0] is outer[99] and outer[0][0][0] == 7
    monkeypatch.setenv("MEDTOOLKIT_PICKLE_MAX_ELEMENTS", "1000")
    with pytest.raises(PickleTooLargeError, match="more than 1000 elements"):
        safe_load(path)
    monkeypatch.setenv("MEDTOOLKIT_PICKLE_MAX_ELEMENTS", "lots")
    with pytest.raises(ValueError, match="MEDTOOLKIT_PICKLE_MAX_ELEMENTS='lots' must be a positive integer"):
        safe_load(path)


def test_element_budget_scales_with_file_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDTOOLKIT_PICKLE_MAX_ELEMENTS", raising=False)
    assert element_budget(6_000) == 10_000_000
    assert element_budget(17_000_000) == 17_000_000_000
    assert element_budget(10, max_elements=5) == 5


def test_expansion_counts_shared_references_and_survives_cycles() -> None:
    inner = [1, 2, 3]
    cyclic: list = [inner]
    cyclic.append(cyclic)
    # root: 2 items; inner: 3; the cycle back to the root counts 1
    assert _check_expansion(cyclic, 100, "x") == 6
    shared = [[inner, inner], [inner, inner]]  # 2 + 2 * (2 + 2 * 3)
    assert _check_expansion(shared, 100, "x") == 18
    with pytest.raises(PickleTooLargeError):
        _check_expansion(shared, 17, "x")


def test_newobj_cannot_bypass_constructor_bounds() -> None:
    # bytes.__new__(bytes, 3e9) would allocate: builtin containers are not types to NEWOBJ
    data = _stream(_global("builtins", "bytes") + pickle.MARK + _long(3 * 10**9) + pickle.TUPLE + pickle.NEWOBJ)
    with pytest.raises(pickle.UnpicklingError, match="cannot read crafted.pkl as a pickle"):
        safe_loads(data, source="crafted.pkl")


def test_legitimate_containers_still_load_through_reduce() -> None:
    for protocol in (0, 2, 4, 5):
        data = pickle.dumps({"set": {1, 2}, "ba": bytearray(b"xy"), "frozen": frozenset("ab"),
                             "range": range(10**12)}, protocol=protocol)
        assert safe_loads(data) == {"set": {1, 2}, "ba": bytearray(b"xy"), "frozen": frozenset("ab"),
                                    "range": range(10**12)}


# ----------------------------------------------------------------------------- by-reference classes
def _script_class(name: str, body: dict[str, object]) -> type:
    """A class that looks defined in a script (``__main__.<name>``), so pickle names it by reference."""
    return type(name, (), {"__module__": "__main__", "__qualname__": name, **body})


def _voc_init(self: object) -> None:
    self.idx2word = {0: "A01", 1: "B02"}
    self.word2idx = {"A01": 0, "B02": 1}


@pytest.fixture
def script_classes(monkeypatch: pytest.MonkeyPatch) -> dict[str, type]:
    """``Voc`` (plain state), ``Call`` (``__reduce__`` calls the class) and ``NewArgs``
    (``__getnewargs__``), registered in ``__main__`` for the test."""
    classes = {
        "Voc": _script_class("Voc", {"__init__": _voc_init}),
        "Call": _script_class("Call", {"__reduce__": lambda self: (type(self), ("rm -rf /",))}),
        "NewArgs": _script_class("NewArgs", {"__getnewargs__": lambda self: ("payload",)}),
    }
    for name, cls in classes.items():
        monkeypatch.setattr(sys.modules["__main__"], name, cls, raising=False)
    return classes


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_script_classes_by_reference_load_inertly(script_classes: dict[str, type], protocol: int) -> None:
    voc_class = script_classes["Voc"]
    data = pickle.dumps({"diag_voc": voc_class(), "med_voc": voc_class()}, protocol=protocol)
    assert b"__main__" in data
    loaded = safe_loads(data, source="voc_final.pkl")
    voc = loaded["diag_voc"]
    assert isinstance(voc, InertObject) and not isinstance(voc, voc_class)
    assert type(voc).__qualname__ == "Voc" and type(voc).__pickled_module__ == "__main__"
    assert voc.idx2word == {0: "A01", 1: "B02"} and voc.word2idx == {"A01": 0, "B02": 1}
    assert type(loaded["med_voc"]) is type(voc)
    with pytest.raises(UnsafePickleError, match="refusing to call class '__main__.Voc' from voc_final.pkl"):
        type(voc)()


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_script_classes_with_custom_reduce_stay_refused(script_classes: dict[str, type], protocol: int) -> None:
    with pytest.raises(UnsafePickleError, match="refusing to call class '__main__.Call' from voc_final.pkl"):
        safe_loads(pickle.dumps(script_classes["Call"](), protocol=protocol), source="voc_final.pkl")


def test_script_classes_with_constructor_arguments_stay_refused(script_classes: dict[str, type]) -> None:
    with pytest.raises(UnsafePickleError, match="refusing to build '__main__.NewArgs' from x.pkl with constructor"):
        safe_loads(pickle.dumps(script_classes["NewArgs"](), protocol=2), source="x.pkl")


def test_other_modules_by_reference_stay_refused() -> None:
    data = _stream(_global("mypackage.vocab", "Voc") + pickle.EMPTY_TUPLE + pickle.NEWOBJ)
    with pytest.raises(UnsafePickleError, match=r"refusing to load global 'mypackage\.vocab\.Voc' from x\.pkl"):
        safe_loads(data, source="x.pkl")


# ----------------------------------------------------------------------------- hostile review (issue 8)
def _colliding_keys(count: int) -> bytes:
    """A dict of ``count`` integers ``k * (2**61 - 1)``: all hash to 0, so inserting is quadratic."""
    body = pickle.EMPTY_DICT + pickle.MARK
    body += b"".join(_long(k * (2**61 - 1)) + pickle.NONE for k in range(1, count + 1))
    return _stream(body + pickle.SETITEMS)


def _object_array_with_shape(shape: int) -> bytes:
    """``_reconstruct`` an empty array, then ``BUILD`` it as an object array of ``shape`` items."""
    array = _call(_global("numpy.core.multiarray", "_reconstruct"), _global("numpy", "ndarray"),
                  pickle.MARK + pickle.BININT1 + b"\x00" + pickle.TUPLE, pickle.SHORT_BINBYTES + b"\x01b")
    dtype = _call(_global("numpy", "dtype"), _text("O8"), pickle.NEWFALSE, pickle.NEWTRUE)
    state = (pickle.MARK + pickle.BININT1 + b"\x01" + pickle.MARK + _long(shape) + pickle.TUPLE + dtype
             + pickle.NEWFALSE + pickle.EMPTY_LIST + pickle.TUPLE)
    return _stream(array + state + pickle.BUILD)


_MORE_HOSTILE = {
    # 1,000,000 nested lists (2 MB): loads iteratively, but walking and using it would crawl
    "deep-lists": (_stream(pickle.EMPTY_LIST * 1_000_000 + pickle.APPEND * 999_999),
                   "PickleTooLargeError: refusing to load hostile.pkl: its containers nest deeper than 10000 "
                   "levels (medication data nests a few levels)"),
    "deep-tuples": (_stream(pickle.MARK * 100_000 + pickle.TUPLE * 100_000),
                    "PickleTooLargeError: refusing to load hostile.pkl: its containers nest deeper than 10000 "
                    "levels (medication data nests a few levels)"),
    # 20,000 colliding dict keys (260 KB) took 5 s; a few MB of them would take hours
    "hash-collisions": (_colliding_keys(20_000),
                        "PickleTooLargeError: refusing to load hostile.pkl: it holds more than 5000 integers of "
                        "2**55 or more (such integers can be chosen to collide in a dict and make loading take "
                        "hours); the file is hostile or not a medication dataset"),
    # ndarray.__setstate__ allocates the shape of its state before checking the item list
    "object-array-shape": (_object_array_with_shape(10**9),
                           "PickleTooLargeError: refusing to load hostile.pkl: it expands to more memory than "
                           "is available"),
    "list-range-beyond-ssize": (_stream(_call(_global("builtins", "list"),
                                              _call(_global("builtins", "range"), _long(2**70)))),
                                "PickleTooLargeError: refusing to load hostile.pkl: list(range of "
                                "1180591620717411303424 items) exceeds the 51 bytes of the file; a genuine pickle "
                                "never asks for more than it holds, so the file is truncated or hostile"),
}


def test_more_hostile_pickles_fail_fast_with_one_message() -> None:
    outcomes = _run_hostile({name: data for name, (data, _) in _MORE_HOSTILE.items()})
    for name, (_, expected) in _MORE_HOSTILE.items():
        assert outcomes[name] == expected, (name, outcomes[name])


def test_refusal_messages_stay_short() -> None:
    data = _stream(_global("x" * 1_000_000, "y"))
    with pytest.raises(UnsafePickleError) as caught:
        safe_loads(data, source="hostile.pkl")
    assert len(str(caught.value)) < 600 and "x" * 150 + "..." in str(caught.value)


def test_safe_load_reads_regular_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "records_final.pkl"
    os.mkfifo(fifo)  # opening it for reading would block forever without O_NONBLOCK
    with pytest.raises(UnsafePickleError) as caught:
        safe_load(fifo)
    assert str(caught.value) == f"refusing to load {fifo}: it is not a regular file (a device, FIFO or socket)"
    with pytest.raises(UnsafePickleError, match=r"it is a directory$"):
        safe_load(tmp_path)
    big = tmp_path / "big.pkl"
    with big.open("wb") as handle:  # a sparse 2 GB file: refused from its size, never read
        handle.write(pickle.PROTO + b"\x04")
        handle.truncate(2 * 10**9)
    with pytest.raises(PickleTooLargeError) as caught:
        safe_load(big)
    assert str(caught.value) == (
        f"refusing to load {big}: the file has 2000000000 bytes, more than the limit of 1073741824; if the "
        f"file is genuine, raise it with the environment variable MEDTOOLKIT_PICKLE_MAX_BYTES=<bytes>"
    )
    small = tmp_path / "small.pkl"
    small.write_bytes(pickle.dumps(list(range(100))))
    monkeypatch.setenv("MEDTOOLKIT_PICKLE_MAX_BYTES", "100")
    with pytest.raises(PickleTooLargeError, match="more than the limit of 100"):
        safe_load(small)
    monkeypatch.setenv("MEDTOOLKIT_PICKLE_MAX_BYTES", "1_000")
    assert safe_load(small) == list(range(100))
    monkeypatch.setenv("MEDTOOLKIT_PICKLE_MAX_BYTES", "-5")
    with pytest.raises(ValueError, match="MEDTOOLKIT_PICKLE_MAX_BYTES='-5' must be a positive integer"):
        safe_load(small)
