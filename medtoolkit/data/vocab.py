"""Vocabularies: a bijection between code strings and 0-based indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class Vocabulary:
    """Maps code strings (ICD-9, ATC3, ...) to contiguous 0-based indices and back.

    Indices are 0-based and dense. Padded batches shift them by one so that 0 can
    mean "padding" (see :mod:`medtoolkit.data.batching`); the vocabulary itself
    never reserves an index.

    Args:
        codes: the codes in index order; duplicates are an error.
        name: the vocabulary's name (``"diagnoses"``, ``"procedures"``, ``"medications"``).
    """

    def __init__(self, codes: Sequence[str], name: str = "") -> None:
        self.name = name
        self.idx2word: list[str] = [str(code) for code in codes]
        self.word2idx: dict[str, int] = {}
        for index, code in enumerate(self.idx2word):
            if code in self.word2idx:
                raise ValueError(
                    f"vocabulary {name!r}: code {code!r} appears twice "
                    f"(indices {self.word2idx[code]} and {index})"
                )
            self.word2idx[code] = index

    def __len__(self) -> int:
        return len(self.idx2word)

    def __contains__(self, code: object) -> bool:
        return code in self.word2idx

    def __repr__(self) -> str:
        return f"Vocabulary(name={self.name!r}, size={len(self)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.idx2word == other.idx2word

    def index(self, code: str) -> int:
        """Index of ``code``; raises ``KeyError`` naming the vocabulary when unknown."""
        try:
            return self.word2idx[code]
        except KeyError:
            raise KeyError(f"code {code!r} is not in vocabulary {self.name!r}") from None

    def encode(self, codes: Iterable[str]) -> list[int]:
        """Indices of several codes (each must be known)."""
        return [self.index(code) for code in codes]

    def decode(self, indices: Iterable[int]) -> list[str]:
        """Codes of several indices."""
        return [self.idx2word[int(i)] for i in indices]

    def to_json(self) -> dict[str, object]:
        """A JSON-safe description (name and codes in index order)."""
        return {"name": self.name, "codes": list(self.idx2word)}

    @classmethod
    def from_json(cls, payload: dict[str, object]) -> "Vocabulary":
        """Inverse of :meth:`to_json`."""
        return cls(list(payload["codes"]), name=str(payload.get("name", "")))  # type: ignore[arg-type]
