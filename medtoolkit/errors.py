"""How the command line reports a failure: one ``error: ...`` line, no traceback.

Every exception that escapes a command is turned into a single line by
:func:`error_message`. The exception types listed in :data:`EXPECTED_ERRORS` are the
failures a user can cause or fix (a bad file, a missing directory, a full disk, a config
mistake, a checkpoint that does not fit the model); anything else is treated as a bug in
medtoolkit or a plugin: it still gets one line, ending in a hint to rerun with ``--debug``
(or ``MEDTOOLKIT_DEBUG=1``), which prints the full traceback before the line.

The message is collapsed to one line (newlines and runs of spaces become one space) and
capped at :data:`MAX_MESSAGE` characters. When the exception carries a file name
(:class:`OSError`) the name is put in front unless the text already has it. Messages of
:class:`ValueError` and :class:`OSError` (and registry errors) are written for users and
printed as they are, and so are the pickle errors of :mod:`medtoolkit.data.safe_pickle`
(they name the file: ``error: refusing to load /data/x.pkl: ...``); any other exception
is shown with its type name and, unless it names it already, the command's *subject* (the
run file or run directory the user passed) in front: ``error: runs/x: KeyError: 'model'``.

A :class:`medtoolkit.config.ConfigValidationError` with one mistake is one line like any
other (``error: run.yaml: model.dropout: ...``); with several, the command line prints one
indented ``  - path: message`` line per mistake first and ends with the single ``error:``
line (``error: run.yaml: 3 errors (listed above)``), see :func:`error_details`.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

MAX_MESSAGE = 500
"""Longest message printed after ``error: `` (longer ones end in ``...``)."""

DEBUG_HINT = "unexpected error, probably a bug; run with --debug for the traceback"
"""Appended (in parentheses) to the line of an exception not in :data:`EXPECTED_ERRORS`."""

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # config and input mistakes (ConfigValidationError, pydantic ValidationError, bad checkpoints)
    LookupError,  # KeyError / IndexError from malformed files; unknown component names
    OSError,  # missing files, --out pointing at a file, permission denied, disk full
    EOFError,  # truncated pickle or checkpoint files
    pickle.UnpicklingError,  # corrupt or refused pickles (medtoolkit.data.safe_pickle.UnsafePickleError)
    MemoryError,  # a dataset or model too large for this machine
    RecursionError,  # deeply nested (malicious) YAML or pickle
    RuntimeError,  # torch: state_dict mismatches, unreadable archives, CUDA out of memory
)
"""Failures a user can cause or fix: reported without the ``--debug`` hint.

``yaml.YAMLError`` is expected as well (checked by name so that this module imports
nothing heavy); :class:`NotImplementedError` is a :class:`RuntimeError` but counts as a bug.
"""

# Types whose own message is written for users: printed as is, without the type name.
_SELF_DESCRIBING: tuple[type[BaseException], ...] = (ValueError, OSError)

# Module whose pickle errors name the file they are about (see _is_safe_pickle_error).
_SAFE_PICKLE_MODULE = "medtoolkit.data.safe_pickle"


def is_expected(error: BaseException) -> bool:
    """Whether ``error`` is a user-fixable failure (see :data:`EXPECTED_ERRORS`)."""
    if isinstance(error, NotImplementedError):
        return False
    return isinstance(error, EXPECTED_ERRORS) or _is_yaml_error(error)


def error_message(error: BaseException, subject: str | Path | None = None) -> str:
    """The text printed after ``error: `` for ``error``.

    Args:
        error: the exception that ended the command.
        subject: the file or directory the command worked on (run file, run directory);
            put in front of messages that do not name it already.

    Returns:
        One line of at most :data:`MAX_MESSAGE` characters.
    """
    if _is_config_error(error):  # its text may quote a multi-line YAML error: one line all the same
        return _cap(_collapse(error.summary()))  # type: ignore[attr-defined]
    text = _collapse(_describe(error))
    subject_text = str(Path(subject)) if subject is not None and str(subject) else ""
    if subject_text and subject_text not in text and not _self_describing(error):
        text = f"{subject_text}: {text}"
    if not is_expected(error):
        text = f"{text} ({DEBUG_HINT})"
    return _cap(text)


# ---------------------------------------------------------------------------- helpers
def _describe(error: BaseException) -> str:
    """The exception's message, with its type name when the message alone says little."""
    if _is_pydantic_error(error):
        return _pydantic_message(error)
    if isinstance(error, OSError):
        return _os_message(error)
    if isinstance(error, KeyError):
        if len(error.args) == 1 and isinstance(error.args[0], str) and " " in error.args[0]:
            return error.args[0]  # a sentence (UnknownComponentError, ...), not a bare key
        message = ", ".join(repr(arg) for arg in error.args)
    else:
        message = str(error)
    if message.strip() and _self_describing(error):
        return message
    if isinstance(error, MemoryError):
        return f"out of memory (MemoryError{': ' + message if message.strip() else ''})"
    name = type(error).__name__
    return f"{name}: {message}" if message.strip() else name


def _os_message(error: OSError) -> str:
    """``path: reason`` for an :class:`OSError` that carries a file name."""
    reason = error.strerror or str(error)
    filename = error.filename
    text = str(error)
    if filename is None:
        return error.strerror or text or type(error).__name__  # "[Errno 28] ..." -> "No space left ..."
    if error.strerror and text.startswith("["):  # "[Errno 20] Not a directory: 'x'": rewrite
        text = f"{filename}: {reason}"
        if error.filename2 is not None:
            text += f" (-> {error.filename2})"
        return text
    return text if str(filename) in text else f"{filename}: {text}"


def _self_describing(error: BaseException) -> bool:
    """True for errors whose message is written for users (they name what they are about).

    An :class:`OSError` with an errno but no file name (``No space left on device``) is
    not: the command's subject is put in front of it.
    """
    if isinstance(error, OSError) and error.filename is None and error.errno is not None:
        return False
    return isinstance(error, _SELF_DESCRIBING) or _is_registry_error(error) or _is_safe_pickle_error(error)


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _cap(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3].rstrip() + "..."


def _is_yaml_error(error: BaseException) -> bool:
    return any(klass.__name__ == "YAMLError" and klass.__module__.split(".")[0] == "yaml"
               for klass in type(error).__mro__)


def _is_pydantic_error(error: BaseException) -> bool:
    return type(error).__name__ == "ValidationError" and type(error).__module__.startswith("pydantic")


def error_details(error: BaseException) -> str:
    """Lines printed before the ``error:`` line: the override notes and every mistake of a run file.

    Args:
        error: the exception that ended the command.

    Returns:
        ``note: ...`` lines of the overrides (a switched node type, what it reset) and the
        indented detail lines of a multi-error run file, or ``""`` when the error line says
        everything.
    """
    if not _is_config_error(error):
        return ""
    lines = [f"note: {_cap(_collapse(note))}" for note in getattr(error, "notes", [])]
    if len(error.errors) > 1:  # type: ignore[attr-defined]
        entries: list[str] = []
        for line in error.detail_lines().splitlines():  # type: ignore[attr-defined]
            # one line per mistake, even when a message has newlines of its own
            if line.startswith("  - ") or not entries:
                entries.append(line)
            else:
                entries[-1] += " " + line
        lines += ["  - " + _cap(_collapse(entry.removeprefix("  - "))) for entry in entries]
    return "\n".join(lines)


def _is_config_error(error: BaseException) -> bool:
    return any(klass.__name__ == "ConfigValidationError" and klass.__module__ == "medtoolkit.config"
               for klass in type(error).__mro__)


def _is_safe_pickle_error(error: BaseException) -> bool:
    """True for a pickle error of :mod:`medtoolkit.data.safe_pickle`: its message names the file.

    That is an :class:`~medtoolkit.data.safe_pickle.UnsafePickleError` (refused globals,
    :class:`~medtoolkit.data.safe_pickle.PickleTooLargeError`, ...) wherever it is raised,
    or a plain :class:`pickle.UnpicklingError` raised by that module
    (``cannot read <file> as a pickle: ...``); a bare ``invalid load key`` from elsewhere is not.
    """
    if not isinstance(error, pickle.UnpicklingError):
        return False
    if any(klass.__module__ == _SAFE_PICKLE_MODULE for klass in type(error).__mro__):
        return True
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback is not None and traceback.tb_frame.f_globals.get("__name__") == _SAFE_PICKLE_MODULE


def _is_registry_error(error: BaseException) -> bool:
    return any(klass.__name__ == "RegistryError" and klass.__module__ == "medtoolkit.registry"
               for klass in type(error).__mro__)


def _pydantic_message(error: BaseException) -> str:
    """``invalid Params: width: Input should be ...; depth: ...`` for a pydantic ValidationError."""
    items = []
    for item in error.errors():  # type: ignore[attr-defined]
        location = ".".join(str(part) for part in item.get("loc", ())) or "<root>"
        items.append(f"{location}: {item.get('msg', '')}")
    title = getattr(error, "title", "input")
    return f"invalid {title}: " + "; ".join(items)
