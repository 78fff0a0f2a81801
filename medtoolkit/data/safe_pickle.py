"""Restricted unpickling of the field's (dill) pickles: data comes back, code never runs.

The processed benchmark files of the GAMENet/SafeDrug family are dill pickles. Some hold
plain lists and numpy arrays; ``voc_final.pkl`` holds ``Voc`` objects whose class was
defined in ``__main__`` and therefore pickled *by value*: the stream rebuilds the class
through ``dill._dill._create_type`` and its methods through ``_create_code`` /
``_create_function``. Loading such a file with :func:`pickle.load` or ``dill.load`` would
build (and could run) arbitrary code, and old files carry Python 3.6 code objects that
no longer load at all.

:class:`SafeUnpickler` resolves every global of the stream through an allow-list and never
imports a module:

* plain builtins (``list``, ``dict``, ``set``, ``int``, ...), ``collections.OrderedDict`` /
  ``defaultdict`` (builtin factories only), ``copyreg._reconstructor`` for inert classes,
  ``_codecs.encode`` (latin-1/utf-8/ascii only); other harmless builtins (``len`` in a
  pickled function's globals) become references that refuse to be called, while
  ``eval``/``exec``/``open``/``__import__``/... are refused outright;
* numpy array and scalar reconstruction (``_reconstruct``, ``scalar``, ``_frombuffer``,
  ``ndarray``, ``dtype``) under both the ``numpy.core`` and ``numpy._core`` names;
* *replacements* for dill's helpers: ``_create_type`` builds an inert class holding data
  attributes only (an :class:`InertObject` subclass; method names are listed in
  ``__pickled_methods__``, their code is dropped); ``_create_code`` / ``_unmarshal`` /
  ``_create_function`` / ``_create_cell`` and the ``CodeType`` / ``FunctionType`` /
  ``property`` / ``staticmethod`` / ``classmethod`` types of ``_load_type`` return
  placeholders that raise when called; ``_import_module`` returns a token naming the module
  and ``_get_attr`` resolves a token's attribute through this same allow-list (so
  ``_get_attr(_import_module("os"), "system")`` is refused); ``module.__dict__`` (a pickled
  function's globals) is an empty dict; ``_create_array`` rebuilds a plain ``numpy.ndarray``;
  dill's ``getattr``/``setattr`` shims work on inert objects only.

Anything else raises :class:`UnsafePickleError` naming the file and the refused global.

Size bounds (hostile files must not exhaust memory): before unpickling, the opcode stream
is scanned and every declared length (``BINBYTES8``, ``BINUNICODE``, ``FRAME``, ...) must fit
in the rest of the file; constructors called by the stream (``bytearray(n)``,
``list(range(n))``, ``numpy.ndarray(shape)``, ...) may not build more than the file could
hold; and after loading, the number of elements reachable from the result (containers'
items and array elements, a shared reference counted each time it is referenced) must stay
within a budget of ``max(10_000_000, 1000 * file bytes)``. The budget is raised with the
environment variable ``MEDTOOLKIT_PICKLE_MAX_ELEMENTS`` or the ``max_elements`` argument of
:func:`safe_load`. Violations raise :class:`PickleTooLargeError` (an
:class:`UnsafePickleError`) naming the file.

:func:`safe_load` reads regular files only (a FIFO or device is refused without blocking) of
at most 1 GiB (``MEDTOOLKIT_PICKLE_MAX_BYTES`` raises the limit); running out of memory while
loading is reported as :class:`PickleTooLargeError` naming the file.

Classes pickled *by reference* from a script (``__main__.Voc`` plus an instance state dict,
what :func:`pickle.dumps` writes for an instance of a class defined in a script) come back as
inert :class:`InertObject` subclasses too, but only when the instance is rebuilt from plain
state (``copyreg._reconstructor`` or ``NEWOBJ`` without arguments, then ``BUILD``); calling
such a class (a custom ``__reduce__``) is refused.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import copyreg
import contextvars
import io
import os
import pickle
import pickletools
import re
from os import PathLike
from pathlib import Path
from collections.abc import Sequence
from itertools import chain
from typing import Any, BinaryIO

import numpy as np

from medtoolkit.files import FileTooLargeError, NotARegularFileError, read_regular_file

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _np_multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _np_numeric  # type: ignore[no-redef]

__all__ = [
    "InertCell",
    "InertCode",
    "InertDescriptor",
    "InertFunction",
    "InertObject",
    "MAX_BYTES_ENV",
    "MAX_ELEMENTS_ENV",
    "PickleBudgetError",
    "PickleTooLargeError",
    "SafeUnpickler",
    "UnsafePickleError",
    "element_budget",
    "max_file_bytes",
    "safe_load",
    "safe_loads",
]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something outside the allow-list (nothing was executed)."""


class PickleTooLargeError(UnsafePickleError):
    """A pickle declares or expands to more data than its size allows (nothing was built)."""


class PickleBudgetError(PickleTooLargeError):
    """A loaded pickle expands to more elements than the budget (which can be raised)."""


#: environment variable overriding the element budget of :func:`safe_load`
MAX_ELEMENTS_ENV = "MEDTOOLKIT_PICKLE_MAX_ELEMENTS"
#: environment variable overriding the largest file :func:`safe_load` reads (bytes)
MAX_BYTES_ENV = "MEDTOOLKIT_PICKLE_MAX_BYTES"
_DEFAULT_MAX_BYTES = 2**30
#: the budget is ``max(_MIN_ELEMENT_BUDGET, _ELEMENTS_PER_BYTE * file bytes)``
_MIN_ELEMENT_BUDGET = 10_000_000
_ELEMENTS_PER_BYTE = 1000
#: size limit (file bytes) for constructors called while a stream is being loaded
_ACTIVE_LIMIT: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar(
    "medtoolkit_safe_pickle_limit", default=None
)


def _too_large(source: str, what: str, limit: int) -> PickleTooLargeError:
    return PickleTooLargeError(
        f"refusing to load {source}: {what} exceeds the {limit} bytes of the file; a genuine "
        f"pickle never asks for more than it holds, so the file is truncated or hostile"
    )


def _range_len(items: range) -> int:
    """``len(items)``, also for ranges longer than ``sys.maxsize`` (where ``len`` raises)."""
    try:
        return len(items)
    except OverflowError:
        return max(0, -((items.start - items.stop) // items.step))


def _check_lazy_sizes(what: str, args: tuple[Any, ...], allow_int: bool = True) -> None:
    """Refuse ``range`` (and, unless ``allow_int``, int) arguments larger than the loading file."""
    active = _ACTIVE_LIMIT.get()
    if active is None:
        return
    limit, source = active
    for arg in args:
        if isinstance(arg, range) and _range_len(arg) > limit:
            raise _too_large(source, f"{what}(range of {_range_len(arg)} items)", limit)
        if (not allow_int and isinstance(arg, int) and not isinstance(arg, bool)
                and abs(arg) > limit):
            raise _too_large(source, f"{what}({arg})", limit)


# ---------------------------------------------------------------------------- placeholders
class _Inert:
    """Base of the placeholders: plain attribute bags that refuse to be called."""

    _what = "object"

    def __init__(self, source: str, **attributes: Any) -> None:
        self.__dict__.update(attributes)
        self.__dict__["_source"] = source

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError(
            f"{self!r} from {self.__dict__.get('_source', '<pickle>')} was not restored: "
            f"safe_pickle never rebuilds pickled {self._what}s, so it cannot be called"
        )

    def __repr__(self) -> str:
        name = self.__dict__.get("__qualname__") or self.__dict__.get("name") or ""
        return f"<inert pickled {self._what} {name}>".replace(" >", ">")


class InertCode(_Inert):
    """Stand-in for a pickled code object; ``strings`` keeps its string fields (names, file)."""

    _what = "code object"


class InertFunction(_Inert):
    """Stand-in for a pickled function (``name``, ``code``); calling it raises."""

    _what = "function"


class InertDescriptor(_Inert):
    """Stand-in for a pickled ``property`` / ``staticmethod`` / ``classmethod``."""

    _what = "descriptor"


class InertCell(_Inert):
    """Stand-in for a closure cell; ``cell_contents`` holds the (safely loaded) value."""

    _what = "closure cell"


class _Reference(_Inert):
    """A global that may be *referenced* (e.g. ``len`` in a function's globals) but not called."""

    _what = "global reference"


class _ModuleToken:
    """An allow-listed module named by the stream (``_import_module``); never a real module."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<module token {self.name}>"


class _TypeToken(_Inert):
    """The metaclass ``type`` as named by dill; only :func:`_create_type` accepts it."""

    _what = "metaclass"


_CELL_EMPTY = object()
_MISSING: Any = object()
_ALLOWED_CLASS_DUNDERS = frozenset({"__qualname__", "__doc__", "__module__", "__name__",
                                    "__pickled_methods__", "__pickled_module__"})


class _RefusedClassAttribute(UnsafePickleError, AttributeError):
    """Setting a special attribute on an inert class (an ``AttributeError`` too, so that
    introspection tools such as Sphinx treat it as a read-only attribute)."""


class _InertMeta(type):
    """Metaclass of inert classes: special (dunder) attributes cannot be set after creation."""

    def __setattr__(cls, name: str, value: Any) -> None:
        if name.startswith("__") and name.endswith("__") and name not in _ALLOWED_CLASS_DUNDERS:
            raise _RefusedClassAttribute(f"refusing to set special attribute {name!r} on inert class")
        super().__setattr__(name, value)


class InertObject(metaclass=_InertMeta):
    """Base of every class rebuilt from a pickle: data attributes only, no pickled behaviour.

    ``__pickled_methods__`` lists the names of the methods/descriptors the original class
    had; they are not attached. ``__pickled_module__`` is the module the class claimed.
    """

    __pickled_methods__: tuple[str, ...] = ()
    __pickled_module__: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        """Create an instance; lazily sized arguments (``range``) may not exceed the file."""
        _check_lazy_sizes(cls.__qualname__, (*args, *kwargs.values()), allow_int=not issubclass(cls, bytes))
        base_new = super().__new__
        if base_new is object.__new__:
            return object.__new__(cls)
        return base_new(cls, *args, **kwargs)

    def __repr__(self) -> str:
        fields = ", ".join(sorted(self.__dict__))
        return f"<inert {type(self).__qualname__} from {self.__pickled_module__}: {fields}>"


class _ReferenceMeta(_InertMeta):
    """Metaclass of classes named by reference (``__main__.Voc``): they cannot be called."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError(
            f"refusing to call class '{cls.__pickled_module__}.{cls.__qualname__}' from "
            f"{cls.__pickled_source__}: classes pickled by reference are only rebuilt from plain "
            f"state (no custom __reduce__)"
        )


class _ReferencedObject(InertObject, metaclass=_ReferenceMeta):
    """Base of classes named by reference: instances are rebuilt from a state dict only."""

    __pickled_source__ = "<pickle>"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        """``NEWOBJ`` without arguments only (a plain instance whose state follows)."""
        if args or kwargs:
            raise UnsafePickleError(
                f"refusing to build '{cls.__pickled_module__}.{cls.__qualname__}' from "
                f"{cls.__pickled_source__} with constructor arguments: classes pickled by "
                f"reference are only rebuilt from plain state"
            )
        return object.__new__(cls)


class _Constructor:
    """A builtin container type as called by a stream: sizes of lazy arguments are bounded.

    Calling it builds the real type (``list``, ``bytearray``, ...); it is not a type itself, so
    ``NEWOBJ`` (``cls.__new__(cls, *args)``, unbounded) cannot use it.
    """

    def __init__(self, kind: type) -> None:
        self.type = kind

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _check_lazy_sizes(self.type.__name__, (*args, *kwargs.values()),
                          allow_int=self.type not in (bytes, bytearray))
        return self.type(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<builtins.{self.type.__name__}>"


class _ArrayConstructor:
    """``numpy.ndarray`` as called by a stream: a fresh buffer may not exceed the file."""

    def __call__(
        self, shape: Any, dtype: Any = float, buffer: Any = None, *args: Any, **kwargs: Any
    ) -> np.ndarray:
        if buffer is None and kwargs.get("buffer") is None:
            _check_array_size("numpy.ndarray", shape, dtype)
        return np.ndarray(shape, dtype, buffer, *args, **kwargs)


def _check_array_size(what: str, shape: Any, dtype: Any) -> None:
    active = _ACTIVE_LIMIT.get()
    if active is None:
        return
    limit, source = active
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        raise UnsafePickleError(f"refusing to load {source}: {what} shape {shape!r} is not a tuple of sizes")
    count = 1
    for d in dims:
        count *= d
    nbytes = count * max(np.dtype(dtype).itemsize, 1)
    if nbytes > limit:
        raise _too_large(source, f"{what} of shape {dims} ({nbytes} bytes)", limit)


def _unwrap(value: Any) -> Any:
    return value.type if isinstance(value, _Constructor) else value


_ARRAY_CONSTRUCTOR = _ArrayConstructor()


# ---------------------------------------------------------------------------- allow-lists
_SAFE_BUILTIN_TYPES: dict[str, type] = {
    t.__name__: t
    for t in (
        object, int, float, complex, bool, str, bytes, bytearray, list, tuple, dict, set,
        frozenset, slice, range,
    )
}
_SAFE_BUILTIN_TYPES["NoneType"] = type(None)
#: types a stream receives wrapped in a :class:`_Constructor` (their calls can allocate)
_SIZED_TYPES = frozenset({bytes, bytearray, list, tuple, set, frozenset, dict})
_SAFE_BUILTIN_CONSTANTS = {"None": None, "True": True, "False": False,
                           "Ellipsis": Ellipsis, "NotImplemented": NotImplemented}
#: base classes an inert class may keep (everything else is refused)
_SAFE_BASES = (object, dict, list, tuple, set, frozenset, int, float, str, bytes)
#: builtins that are refused outright, even as non-callable references
_DANGEROUS_BUILTINS = frozenset({
    "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "input",
    "breakpoint", "exit", "quit", "help", "memoryview", "super", "type", "getattr", "setattr",
    "delattr", "__build_class__", "__loader__", "__spec__",
})
#: dill's ``_load_type`` names that become inert factories (old dill pickles code this way)
_INERT_TYPE_FACTORIES: dict[str, type[_Inert]] = {
    "CodeType": InertCode, "FunctionType": InertFunction, "LambdaType": InertFunction,
    "MethodType": InertFunction, "CellType": InertCell, "property": InertDescriptor,
    "staticmethod": InertDescriptor, "classmethod": InertDescriptor,
}
_NUMPY_MODULES = frozenset({
    "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core._multiarray_umath",
    "numpy._core._multiarray_umath",
})
_NUMERIC_MODULES = frozenset({"numpy.core.numeric", "numpy._core.numeric"})
_DILL_MODULES = frozenset({"dill._dill", "dill.dill", "dill._shims"})
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_SAFE_ENCODINGS = frozenset({"latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"})


def _is_inert_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, InertObject)


# ---------------------------------------------------------------------------- the unpickler
class SafeUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` whose globals come from an allow-list only.

    Args:
        file: a binary file object positioned at the pickle.
        source: name of the file (used in error messages).
    """

    def __init__(self, file: BinaryIO, source: str = "<pickle>") -> None:
        super().__init__(file, encoding="latin1")
        self.source = source
        self._main_globals: dict[str, Any] = {}
        self._module_globals: dict[str, dict[str, Any]] = {"__main__": self._main_globals}
        self._namedtuples: set[type] = set()
        self._by_reference: dict[tuple[str, str], type] = {}
        self._constructors = {kind: _Constructor(kind) for kind in _SIZED_TYPES}

    # -- errors -------------------------------------------------------------------------
    def _refuse(self, what: str, reason: str) -> UnsafePickleError:
        if len(what) > 200:  # names and reprs from the stream: a megabyte-long global name stays short
            what = what[:197] + "..."
        return UnsafePickleError(f"refusing to load {what} from {self.source}: {reason}")

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle hook
        raise self._refuse(f"persistent id {pid!r}", "persistent references are not supported")

    # -- global resolution ----------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` through the allow-list (never imports anything)."""
        # Python 2 names (protocol < 3 streams), as pickle's own find_class maps them
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, _MODULE_ALIASES.get(module, module))
        resolved = self._resolve(module, name)
        if resolved is _MISSING:
            raise self._refuse(
                f"global '{module}.{name}'",
                "not on the allow-list of medtoolkit.data.safe_pickle (plain containers, numpy "
                "arrays and inert stand-ins for dill's class/function helpers); the file may be "
                "malicious or hold an unsupported type",
            )
        return resolved

    def _resolve(self, module: str, name: str) -> Any:
        if module == "builtins":
            return self._resolve_builtin(name)
        if name == "__dict__":  # a pickled function's globals (``module.__dict__``): never imported
            return self._module_globals.setdefault(module, {})
        if module == "dill" and name in ("_dill", "dill", "_shims"):
            return _ModuleToken(f"dill.{name}")
        if module in _DILL_MODULES:
            return self._dill_helpers().get(name, _MISSING)
        if module == "__main__" and name.isidentifier():
            return self._referenced_class(module, name)
        if module in _NUMPY_MODULES:
            return {"_reconstruct": self._reconstruct, "scalar": self._scalar}.get(name, _MISSING)
        if module in _NUMERIC_MODULES and name == "_frombuffer":
            return self._frombuffer
        if module == "numpy":
            return {"ndarray": _ARRAY_CONSTRUCTOR, "dtype": self._dtype}.get(name, _MISSING)
        if module == "_codecs" and name == "encode":
            return self._encode
        if module == "copyreg" and name == "_reconstructor":
            return self._reconstructor
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "collections" and name == "defaultdict":
            return self._defaultdict
        return _MISSING

    def _referenced_class(self, module: str, name: str) -> type:
        """An inert stand-in for a script's class named by reference (never imported)."""
        key = (module, name)
        if key not in self._by_reference:
            self._by_reference[key] = _ReferenceMeta(name, (_ReferencedObject,), {
                "__module__": __name__, "__qualname__": name, "__doc__": None,
                "__pickled_module__": module, "__pickled_source__": self.source,
            })
        return self._by_reference[key]

    def _builtin_type(self, name: str) -> Any:
        kind = _SAFE_BUILTIN_TYPES[name]
        return self._constructors.get(kind, kind)

    def _resolve_builtin(self, name: str) -> Any:
        if name in _SAFE_BUILTIN_TYPES:
            return self._builtin_type(name)
        if name in _SAFE_BUILTIN_CONSTANTS:
            return _SAFE_BUILTIN_CONSTANTS[name]
        if name == "__main__":  # dill writes __main__.__dict__ as ``__builtin__.__main__``
            return self._main_globals
        if name == "getattr":
            return self._getattr
        if name == "setattr":
            return self._setattr
        if name == "delattr":
            return self._delattr
        if name in _INERT_TYPE_FACTORIES:  # property / staticmethod / classmethod
            return self._load_type(name)
        if name in _DANGEROUS_BUILTINS or not hasattr(builtins, name):
            return _MISSING
        # e.g. ``len`` referenced from a pickled function's globals: keep a reference that
        # cannot be called
        return _Reference(self.source, name=f"builtins.{name}")

    def _dill_helpers(self) -> dict[str, Any]:
        return {
            "_create_type": self._create_type,
            "_load_type": self._load_type,
            "_create_code": self._create_code,
            "_unmarshal": self._create_code,
            "_create_function": self._create_function,
            "_create_cell": self._create_cell,
            "_create_array": self._create_array,
            "_create_namedtuple": self._create_namedtuple,
            "_import_module": self._import_module,
            "_get_attr": self._get_attr,
            "_setattr": self._setattr,
            "_delattr": self._delattr,
            "_CELL_EMPTY": _CELL_EMPTY,
            "_CELL_REF": None,
        }

    # -- dill replacements ------------------------------------------------------------------
    def _load_type(self, name: str) -> Any:
        if name == "type":
            return _TypeToken(self.source, name="type")
        if name in _SAFE_BUILTIN_TYPES:
            return self._builtin_type(name)
        if name in _INERT_TYPE_FACTORIES:
            factory = _INERT_TYPE_FACTORIES[name]
            return lambda *args, **kwargs: self._inert_from_type(factory, name, args)
        raise self._refuse(f"type '{name}' (dill._load_type)", "not a plain data type")

    def _inert_from_type(self, factory: type[_Inert], type_name: str, args: tuple[Any, ...]) -> _Inert:
        if factory is InertCode:
            return self._create_code(*args)
        if factory is InertFunction:
            return self._create_function(*args) if args else InertFunction(self.source)
        if factory is InertCell:
            return self._create_cell(*args)
        return InertDescriptor(self.source, kind=type_name, __func__=args[0] if args else None)

    def _create_type(self, typeobj: Any, name: Any, bases: Any, namespace: Any) -> type:
        if not isinstance(typeobj, _TypeToken):
            raise self._refuse(f"class {name!r} with metaclass {typeobj!r}", "only plain classes")
        if not isinstance(name, str) or not isinstance(bases, tuple) or not isinstance(namespace, dict):
            raise self._refuse(f"class {name!r}", "malformed dill class record")
        kept: list[type] = []
        for base in map(_unwrap, bases):
            if isinstance(base, _ReferenceMeta):
                raise self._refuse(f"class {name!r} with base {base!r}", "base class not allowed")
            if _is_inert_class(base) or (base in _SAFE_BASES and base is not object):
                kept.append(base)
            elif base is not object:
                raise self._refuse(f"class {name!r} with base {base!r}", "base class not allowed")
        if not any(_is_inert_class(base) for base in kept):
            kept.insert(0, InertObject)
        methods: list[str] = []
        attributes: dict[str, Any] = {}
        for key, value in namespace.items():
            if not isinstance(key, str):
                continue
            if isinstance(value, (_Inert, _ModuleToken)) or callable(value):
                methods.append(key)
            elif not (key.startswith("__") and key.endswith("__")):
                attributes[key] = value
        doc = namespace.get("__doc__")
        attributes.update(
            __module__=__name__,
            __qualname__=name,
            __doc__=doc if isinstance(doc, str) else None,
            __pickled_methods__=tuple(methods),
            __pickled_module__=str(namespace.get("__module__", "")),
        )
        try:
            return type(name, tuple(kept), attributes)
        except TypeError as error:
            raise self._refuse(f"class {name!r}", f"cannot rebuild it inertly ({error})") from None

    def _create_code(self, *args: Any) -> InertCode:
        strings = tuple(a for a in args if isinstance(a, str))
        return InertCode(self.source, strings=strings, name=strings[-1] if strings else "")

    def _create_function(self, fcode: Any = None, fglobals: Any = None, fname: Any = None,
                         *_ignored: Any) -> InertFunction:
        return InertFunction(self.source, name=fname if isinstance(fname, str) else "", code=fcode)

    def _create_cell(self, contents: Any = _CELL_EMPTY) -> InertCell:
        cell = InertCell(self.source)
        if contents is not _CELL_EMPTY:
            cell.__dict__["cell_contents"] = contents
        return cell

    def _create_array(self, f: Any, args: Any, state: Any, npdict: Any = None) -> np.ndarray:
        if f != self._reconstruct:  # bound methods: equal, not identical
            raise self._refuse(f"array factory {f!r} (dill._create_array)", "not numpy's _reconstruct")
        if npdict:
            raise self._refuse("array instance dict (dill._create_array)", "ndarray subclasses not allowed")
        array = self._reconstruct(*args)
        array.__setstate__(state)
        return array

    def _create_namedtuple(self, name: Any, fieldnames: Any, modulename: Any, defaults: Any = None) -> type:
        if not isinstance(name, str) or not all(isinstance(f, str) for f in fieldnames):
            raise self._refuse(f"namedtuple {name!r}", "malformed field names")
        created = collections.namedtuple(name, list(fieldnames), defaults=defaults, module=str(modulename))
        self._namedtuples.add(created)
        return created

    def _import_module(self, import_name: Any, safe: bool = False) -> _ModuleToken:
        """A token naming the module: nothing is imported; attributes resolve via the allow-list."""
        if not isinstance(import_name, str) or not all(
            part.isidentifier() for part in import_name.split(".")
        ):
            raise self._refuse(f"module {import_name!r} (dill._import_module)", "not a module name")
        return _ModuleToken(_MODULE_ALIASES.get(import_name, import_name))

    def _get_attr(self, obj: Any, name: Any) -> Any:
        if isinstance(obj, _ModuleToken) and isinstance(name, str):
            return self.find_class(obj.name, name)
        raise self._refuse(f"attribute {name!r} of {obj!r} (dill._get_attr)", "only module tokens")

    # -- builtins replacements ------------------------------------------------------------
    def _getattr(self, obj: Any, name: Any, *default: Any) -> Any:
        if isinstance(obj, _ModuleToken) and isinstance(name, str):
            try:
                return self.find_class(obj.name, name)
            except UnsafePickleError:
                if default:
                    return default[0]
                raise
        if isinstance(name, str) and (isinstance(obj, _Inert) or _is_inert_class(obj)
                                      or isinstance(obj, InertObject)):
            namespace = vars(obj)
            if name in namespace:
                return namespace[name]
            if default:
                return default[0]
            raise AttributeError(f"inert object {obj!r} has no attribute {name!r}")
        raise self._refuse(f"getattr({type(obj).__name__}, {name!r})", "only on inert objects")

    def _check_target(self, operation: str, obj: Any, name: Any) -> None:
        if not isinstance(name, str):
            raise self._refuse(f"{operation} with name {name!r}", "names must be strings")
        if name.startswith("__") and name.endswith("__") and name not in _ALLOWED_CLASS_DUNDERS:
            raise self._refuse(f"{operation}(..., {name!r})", "special attributes are not set")
        if not (isinstance(obj, (_Inert, InertObject)) or _is_inert_class(obj)):
            raise self._refuse(f"{operation} on {type(obj).__name__}", "only inert objects")

    def _setattr(self, obj: Any, name: Any, value: Any) -> None:
        self._check_target("setattr", obj, name)
        if isinstance(obj, _Inert) or isinstance(obj, InertObject):
            obj.__dict__[name] = value
        elif name == "__module__":  # keep the inert class's module; remember the claim
            obj.__pickled_module__ = str(value)
        elif name in ("__qualname__", "__name__", "__doc__"):
            if value is not None and not isinstance(value, str):
                raise self._refuse(f"setattr(class, {name!r})", "value must be a string")
            setattr(obj, name, value)
        elif isinstance(value, (_Inert, _ModuleToken)) or callable(value):
            obj.__pickled_methods__ = (*obj.__pickled_methods__, name)
        else:
            setattr(obj, name, value)

    def _delattr(self, obj: Any, name: Any) -> None:
        self._check_target("delattr", obj, name)
        if isinstance(obj, (_Inert, InertObject)):
            obj.__dict__.pop(name, None)

    # -- numpy and codecs ---------------------------------------------------------------------
    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not np.ndarray and subtype is not _ARRAY_CONSTRUCTOR:
            raise self._refuse(f"array subtype {subtype!r}", "only numpy.ndarray")
        if not isinstance(dtype, (bytes, str, np.dtype)):
            raise self._refuse(f"numpy array of dtype {dtype!r}", "dtype expected")
        _check_array_size("numpy array", shape, dtype)
        return _np_multiarray._reconstruct(np.ndarray, shape, dtype)

    def _scalar(self, dtype: Any, *args: Any) -> Any:
        if not isinstance(dtype, np.dtype):
            raise self._refuse(f"numpy scalar of {dtype!r}", "dtype expected")
        return _np_multiarray.scalar(dtype, *args)

    def _frombuffer(self, buffer: Any, dtype: Any, shape: Any, order: Any, *rest: Any) -> np.ndarray:
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise self._refuse(f"numpy buffer of dtype {dtype!r}", "plain dtypes only")
        return _np_numeric._frombuffer(buffer, dtype, shape, order, *rest)

    def _dtype(self, spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
        if not isinstance(spec, str):
            raise self._refuse(f"numpy dtype {spec!r}", "dtype specs must be strings")
        return np.dtype(spec, bool(align), bool(copy))

    def _encode(self, text: Any, encoding: Any = "utf-8") -> bytes:
        if not isinstance(text, str) or str(encoding).lower() not in _SAFE_ENCODINGS:
            raise self._refuse(f"_codecs.encode(..., {encoding!r})", "plain text encodings only")
        return text.encode(encoding)

    def _reconstructor(self, cls: Any, base: Any, state: Any) -> Any:
        base = _unwrap(base)
        _check_lazy_sizes(f"copyreg._reconstructor({base.__name__ if isinstance(base, type) else base!r})",
                          (state,), allow_int=base is not bytes)
        rebuilt = _is_inert_class(cls) or (cls in self._namedtuples and base is tuple)
        if not rebuilt or base not in _SAFE_BASES:
            raise self._refuse(f"copyreg._reconstructor({cls!r}, {base!r})", "only inert classes")
        return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]

    def _defaultdict(self, factory: Any = None, *args: Any) -> collections.defaultdict:
        factory = _unwrap(factory)
        if factory is not None and factory not in _SAFE_BUILTIN_TYPES.values():
            raise self._refuse(f"defaultdict factory {factory!r}", "only builtin types")
        return collections.defaultdict(factory, *args)


# ---------------------------------------------------------------------------- size checks
def _opcode_tables() -> tuple[re.Pattern[bytes], dict[int, int]]:
    """A regex skipping runs of fixed-size opcodes, and the counted opcodes' length widths."""
    fixed: dict[int, list[bytes]] = {}
    counted: dict[int, int] = {}
    widths = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
              pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}
    for opcode in pickletools.opcodes:
        size = opcode.arg.n if opcode.arg is not None else 0
        code = opcode.code.encode("latin-1")
        if opcode.name in ("FRAME", "STOP"):
            continue
        if size >= 0:
            fixed.setdefault(size, []).append(re.escape(code))
        elif size in widths:
            counted[code[0]] = widths[size]
    parts = [b"[" + b"".join(codes) + b"]" + b"." * size for size, codes in sorted(fixed.items())]
    return re.compile(b"(?:" + b"|".join(parts) + b")*+", re.DOTALL), counted


_FIXED_RUN, _COUNTED = _opcode_tables()
_FRAME = pickle.FRAME[0]
_STOP = pickle.STOP[0]
_TWO_LINES = frozenset({pickle.GLOBAL[0], pickle.INST[0]})


#: integer opcodes that can hold values of 2**61 and more (``hash(k * (2**61 - 1)) == 0``)
_LONGS = frozenset({pickle.LONG1[0], pickle.LONG4[0]})
_TEXT_INTS = frozenset({pickle.LONG[0], pickle.INT[0]})
#: most such integers in one stream: as dict keys or set items, colliding hashes make loading
#: quadratic (20,000 keys take seconds, a megabyte of them hours); genuine files have none
_MAX_HUGE_INTS = 5_000


def _too_many_huge_ints(source: str) -> PickleTooLargeError:
    return PickleTooLargeError(
        f"refusing to load {source}: it holds more than {_MAX_HUGE_INTS} integers of 2**55 or more "
        f"(such integers can be chosen to collide in a dict and make loading take hours); the file "
        f"is hostile or not a medication dataset"
    )


def _check_declared_sizes(data: bytes, source: str) -> None:
    """Refuse opcodes whose declared length runs past the end of ``data`` (before any is read).

    Runs of fixed-size opcodes are skipped by a regex; counted opcodes (``BINBYTES8``,
    ``BINUNICODE``, ``LONG4``, ``FRAME``, ...) are checked one by one. An unknown opcode ends
    the scan: the unpickler stops with an error at the same place.
    """
    end = len(data)
    pos = 0
    huge_ints = 0
    while True:
        pos = _FIXED_RUN.match(data, pos).end()  # type: ignore[union-attr]
        if pos >= end:
            return
        opcode = data[pos]
        pos += 1
        width = 8 if opcode == _FRAME else _COUNTED.get(opcode, 0)
        if width:
            if pos + width > end:
                return  # truncated: the unpickler reports it
            declared = int.from_bytes(data[pos:pos + width], "little", signed=False)
            pos += width
            if declared > end - pos:
                name = pickletools.code2op[chr(opcode)].name
                raise PickleTooLargeError(
                    f"cannot read {source} as a pickle: opcode {name} at byte {pos - width - 1} declares "
                    f"{declared} bytes but only {end - pos} remain; the file is truncated or hostile"
                )
            if opcode in _LONGS and declared >= 8:
                huge_ints += 1
                if huge_ints > _MAX_HUGE_INTS:
                    raise _too_many_huge_ints(source)
            if opcode != _FRAME:  # a frame's contents are opcodes: scan them
                pos += declared
        elif opcode == _STOP:
            return
        elif chr(opcode) in pickletools.code2op:  # newline-terminated argument(s)
            for _ in range(2 if opcode in _TWO_LINES else 1):
                newline = data.find(b"\n", pos)
                if newline < 0:
                    return
                if opcode in _TEXT_INTS and newline - pos > 17:
                    huge_ints += 1
                    if huge_ints > _MAX_HUGE_INTS:
                        raise _too_many_huge_ints(source)
                pos = newline + 1
        else:
            return


def element_budget(file_bytes: int, max_elements: int | None = None) -> int:
    """The element budget for a pickle of ``file_bytes`` bytes.

    Args:
        file_bytes: size of the pickle.
        max_elements: explicit budget; None reads ``MEDTOOLKIT_PICKLE_MAX_ELEMENTS`` and
            otherwise uses ``max(10_000_000, 1000 * file_bytes)``.

    Returns:
        the largest number of elements the loaded object may expand to.

    Raises:
        ValueError: the environment variable is not a positive integer.
    """
    if max_elements is not None:
        return int(max_elements)
    override = _positive_int_env(MAX_ELEMENTS_ENV)
    if override is not None:
        return override
    return max(_MIN_ELEMENT_BUDGET, _ELEMENTS_PER_BYTE * file_bytes)


def _positive_int_env(name: str) -> int | None:
    """The positive integer in environment variable ``name`` (``_`` allowed), or None when unset.

    Raises:
        ValueError: the variable is set but is not a positive integer.
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{name}={text[:50]!r} must be a positive integer")
    return value


#: deepest nesting of containers accepted (genuine files nest about 5 levels)
_MAX_DEPTH = 10_000
_ATOMIC = frozenset({int, float, complex, bool, str, bytes, type(None), np.float32, np.float64,
                     np.int32, np.int64})
_SEQUENCES = frozenset({list, tuple})
_NO_CHILDREN: tuple[Any, ...] = ()


def _children(obj: Any) -> tuple[int, Sequence[Any]]:
    """``(own element count, nested objects worth visiting)`` of one loaded object."""
    kind = type(obj)
    if kind in _ATOMIC:
        return 0, _NO_CHILDREN
    if isinstance(obj, (list, tuple, set, frozenset)):
        kinds = set(map(type, obj))
        if kinds <= _ATOMIC:  # the common case (lists of codes): no Python loop
            return len(obj), _NO_CHILDREN
        if kinds <= _SEQUENCES and set(map(type, chain.from_iterable(obj))) <= _ATOMIC:
            # a visit (lists of codes): items of the nested lists counted per reference
            return len(obj) + sum(map(len, obj)), _NO_CHILDREN
        return len(obj), [x for x in obj if type(x) not in _ATOMIC]
    if isinstance(obj, dict):
        nested = [x for x in (*obj.keys(), *obj.values()) if type(x) not in _ATOMIC]
        return len(obj), nested
    if isinstance(obj, np.ndarray):
        if not obj.dtype.hasobject:
            return int(obj.size), _NO_CHILDREN
        return int(obj.size), [x for x in obj.ravel().tolist() if type(x) not in _ATOMIC]
    if isinstance(obj, (bytearray, range, np.generic, type)):  # a range stays lazy (one element)
        return 1, _NO_CHILDREN
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict) and not callable(obj):
        return 1, [state]
    return 1, _NO_CHILDREN


def _check_expansion(root: Any, budget: int, source: str) -> int:
    """Elements reachable from ``root`` (shared references counted each time), within ``budget``.

    Each distinct object is expanded once (its total is memoised by identity; every object is
    kept alive by ``root``), so the walk costs time linear in the loaded objects, and it stops
    as soon as a running total passes the budget, before anything is materialised. A
    reference back to an object still being expanded (a cycle) counts as one element.

    Args:
        root: the loaded object.
        budget: the largest total allowed.
        source: file name for the error message.

    Returns:
        the expanded element count.

    Raises:
        PickleTooLargeError: the total exceeds ``budget``.
    """
    own, nested = _children(root)
    if own > budget:
        raise _over_budget(source, budget)
    totals: dict[int, int] = {}
    in_progress = {id(root)}
    stack: list[list[Any]] = [[root, nested, 0, own]]
    while stack:
        frame = stack[-1]
        nested, index, total = frame[1], frame[2], frame[3]
        descended = False
        while index < len(nested):
            child = nested[index]
            index += 1
            key = id(child)
            count = totals.get(key)
            if count is None:
                if key in in_progress:
                    count = 1
                else:
                    own, grandchildren = _children(child)
                    if own > budget:
                        raise _over_budget(source, budget)
                    if grandchildren:
                        if len(stack) >= _MAX_DEPTH:
                            raise PickleTooLargeError(
                                f"refusing to load {source}: its containers nest deeper than "
                                f"{_MAX_DEPTH} levels (medication data nests a few levels)"
                            )
                        frame[2], frame[3] = index, total
                        in_progress.add(key)
                        stack.append([child, grandchildren, 0, own])
                        descended = True
                        break
                    totals[key] = count = own
            total += count
            if total > budget:
                raise _over_budget(source, budget)
        if descended:
            continue
        stack.pop()
        key = id(frame[0])
        in_progress.discard(key)
        totals[key] = total
        if stack:
            parent = stack[-1]
            parent[3] += total
            if parent[3] > budget:
                raise _over_budget(source, budget)
    return totals[id(root)]


def _over_budget(source: str, budget: int) -> PickleBudgetError:
    return PickleBudgetError(
        f"refusing to load {source}: it expands to more than {budget} elements (items and array "
        f"elements, shared references counted per use); if the "
        f"file is genuine, raise the limit with the environment variable "
        f"{MAX_ELEMENTS_ENV}=<count> or safe_load(..., max_elements=<count>)"
    )


# ---------------------------------------------------------------------------- public API
def safe_loads(data: bytes, source: str = "<bytes>", max_elements: int | None = None) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`.

    Args:
        data: the pickle bytes.
        source: a name for error messages.
        max_elements: element budget (see :func:`element_budget`); None: the default or
            ``MEDTOOLKIT_PICKLE_MAX_ELEMENTS``.

    Returns:
        the unpickled object (classes pickled by value come back as :class:`InertObject`
        subclasses with data attributes only).

    Raises:
        PickleTooLargeError: a declared length runs past the end of the data, a constructor
            asks for more than the data holds, or the result exceeds the element budget.
        UnsafePickleError: the stream asks for a global outside the allow-list.
        pickle.UnpicklingError: the bytes are not a readable pickle (truncated, corrupt).
    """
    return _load(bytes(data), source, max_elements)


def safe_load(path: str | PathLike[str], max_elements: int | None = None) -> Any:
    """Unpickle the file at ``path`` without executing any pickled code.

    Args:
        path: the pickle file.
        max_elements: element budget (see :func:`element_budget`); None: the default
            ``max(10_000_000, 1000 * file bytes)`` or ``MEDTOOLKIT_PICKLE_MAX_ELEMENTS``.

    Returns:
        the unpickled object.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        PickleTooLargeError: the file declares or expands to more than its size allows; the
            message names the file and the override.
        UnsafePickleError: the file asks for a global outside the allow-list; the message
            names the file and the refused global.
        pickle.UnpicklingError: the file is not a readable pickle.
    """
    path = Path(path)
    return _load(_read_file(path), str(path), max_elements)


def max_file_bytes() -> int:
    """The largest pickle file :func:`safe_load` reads: ``MEDTOOLKIT_PICKLE_MAX_BYTES`` or 1 GiB.

    Raises:
        ValueError: the environment variable is not a positive integer.
    """
    override = _positive_int_env(MAX_BYTES_ENV)
    return _DEFAULT_MAX_BYTES if override is None else override


def _read_file(path: Path) -> bytes:
    """The bytes of the regular file ``path`` (never blocks on a FIFO, never reads past the limit)."""
    limit = max_file_bytes()
    hint = f"if the file is genuine, raise the limit with the environment variable {MAX_BYTES_ENV}=<bytes>"
    try:
        return read_regular_file(path, limit)
    except FileNotFoundError:
        raise
    except NotARegularFileError as error:
        raise UnsafePickleError(f"refusing to load {path}: it is {error.kind}") from None
    except FileTooLargeError as error:
        if error.size is not None:
            raise PickleTooLargeError(
                f"refusing to load {path}: the file has {error.size} bytes, more than the limit of "
                f"{limit}; if the file is genuine, raise it with the environment variable {MAX_BYTES_ENV}=<bytes>"
            ) from None
        raise PickleTooLargeError(f"refusing to load {path}: the file has more than {limit} bytes; {hint}") from None
    except MemoryError:
        raise PickleTooLargeError(f"refusing to load {path}: out of memory while reading it") from None
    except OSError as error:
        raise OSError(error.errno, f"cannot open the pickle: {error.strerror}", str(path)) from None


def _load(data: bytes, source: str, max_elements: int | None) -> Any:
    budget = element_budget(len(data), max_elements)
    _check_declared_sizes(data, source)
    token = _ACTIVE_LIMIT.set((len(data), source))
    try:
        loaded = SafeUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except MemoryError:
        raise PickleTooLargeError(
            f"refusing to load {source}: it expands to more memory than is available"
        ) from None
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError,
            IndexError, KeyError, RecursionError, UnicodeDecodeError, OverflowError) as error:
        text = str(error)
        if len(text) > 300:
            text = text[:297] + "..."
        raise pickle.UnpicklingError(
            f"cannot read {source} as a pickle: {type(error).__name__}: {text}"
        ) from error
    finally:
        _ACTIVE_LIMIT.reset(token)
    try:
        _check_expansion(loaded, budget, source)
    except MemoryError:
        raise PickleTooLargeError(f"refusing to load {source}: out of memory while checking its size") from None
    return loaded
