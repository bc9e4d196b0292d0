"""Streaming the elements of a JSON document's top-level arrays, one at a time.

COCO's train2017 annotation file is 448 MB; `json.load` turns it into several GB of Python
objects. This reader decodes one array element at a time from a buffered text stream, so
memory holds one element and one chunk, whatever the file size. Bytes that are not UTF-8
become U+FFFD, so they cost the element holding them, not the rest of the file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from transforms.readers.values import REPLACEMENT, decode_json, kind

_CHUNK = 1 << 20
_WHITESPACE = " \t\n\r"


@dataclass(frozen=True)
class NotUtf8:
    """An array element whose text held bytes that are not UTF-8 (U+FFFD once decoded):
    its strings would be wrong, so it is not decoded at all."""


@dataclass(frozen=True)
class SkippedValue:
    """A top-level value that is not streamed: under a key asked for but not an array, or
    under a key holding bytes that are not UTF-8 (it may have been one asked for). `kind` of
    value it is and, for a list or an object, how many entries it has: what was skipped."""

    kind: str
    entries: int


class _Reader:
    def __init__(self, stream: BinaryIO):
        self._stream = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace")
        self._text = ""
        self._pos = 0
        self._eof = False
        self._consumed = 0  # Characters dropped from the buffer, for error positions.

    def _fill(self) -> bool:
        """Reads more text: at least a chunk, and at least as much as is buffered, so a value
        spanning many chunks is decoded a logarithmic number of times, in linear time."""
        if self._eof:
            return False
        chunk = self._stream.read(max(_CHUNK, len(self._text) - self._pos))
        if not chunk:
            self._eof = True
            return False
        self._consumed += self._pos
        self._text = self._text[self._pos :] + chunk
        self._pos = 0
        return True

    def position(self) -> int:
        return self._consumed + self._pos

    def peek(self) -> str:
        """The next non-whitespace character, not consumed ('' at the end)."""
        while True:
            while self._pos < len(self._text) and self._text[self._pos] in _WHITESPACE:
                self._pos += 1
            if self._pos < len(self._text) or not self._fill():
                return self._text[self._pos : self._pos + 1]

    def expect(self, characters: str) -> str:
        found = self.peek()
        if not found or found not in characters:
            raise ValueError(
                f"expected {' or '.join(repr(c) for c in characters)} at character "
                f"{self.position()}, found {found!r}"
            )
        self._pos += 1
        return found

    def value(self) -> Any:
        """Decodes the next complete JSON value, reading more text until it is whole. Raises
        ValueError naming the character where the document is malformed or too deep."""
        value, _ = self._decoded()
        return value

    def element(self) -> Any:
        """The next value, or NotUtf8 when its text held bytes that were not UTF-8."""
        value, start = self._decoded()
        return NotUtf8() if self._text.find(REPLACEMENT, start, self._pos) >= 0 else value

    def _decoded(self) -> tuple[Any, int]:
        """The next value and where its text starts in the buffer."""
        self.peek()
        while True:
            try:
                value, end = decode_json(self._text, self._pos)
            except json.JSONDecodeError as error:
                if self._fill():
                    continue
                raise ValueError(f"{error.msg} at character {self._consumed + error.pos}") from None
            except RecursionError:
                raise ValueError(
                    f"a value nested too deeply to read at character {self.position()}"
                ) from None
            if end == len(self._text) and self._fill():
                continue  # A number may go on in the next chunk.
            start, self._pos = self._pos, end
            return value, start


def iter_arrays(stream: BinaryIO, keys: set[str]) -> Iterator[tuple[str, Any]]:
    """Yields (key, element) for each element of the top-level arrays named in `keys`, in
    file order (NotUtf8 for an element holding bytes that are not UTF-8), and (key,
    SkippedValue) for such a key whose value is not an array and for a key that is not UTF-8
    text; other top-level values are decoded and dropped. Raises ValueError (after yielding
    what came before) where the document is malformed, naming the character."""
    reader = _Reader(stream)
    reader.expect("{")
    if reader.peek() == "}":
        return
    while True:
        key = reader.value()
        if not isinstance(key, str):
            raise ValueError(f"expected an object key at character {reader.position()}")
        reader.expect(":")
        if key in keys and reader.peek() == "[":
            reader.expect("[")
            if reader.peek() == "]":
                reader.expect("]")
            else:
                while True:
                    yield key, reader.element()
                    if reader.expect(",]") == "]":
                        break
        elif key in keys or REPLACEMENT in key:
            value = reader.value()
            entries = len(value) if isinstance(value, (list, dict)) else 0
            yield key, SkippedValue(kind(value), entries)
        else:
            reader.value()
        if reader.expect(",}") == "}":
            return


def iter_elements(stream: BinaryIO) -> Iterator[Any]:
    """Yields the elements of a document that is a JSON array one at a time (NotUtf8 for an
    element holding bytes that are not UTF-8), or the document itself when it is one value of
    another kind: tools that export a list of records also write a single record alone.
    Raises ValueError (after yielding what came before) where the document is malformed or
    goes on after its end, naming the character."""
    reader = _Reader(stream)
    if reader.peek() != "[":
        yield reader.element()
    else:
        reader.expect("[")
        if reader.peek() == "]":
            reader.expect("]")
        else:
            while True:
                yield reader.element()
                if reader.expect(",]") == "]":
                    break
    if reader.peek():
        raise ValueError(f"more text after the document at character {reader.position()}")
