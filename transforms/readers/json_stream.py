"""Streaming the elements of a JSON document's top-level arrays, one at a time.

COCO's train2017 annotation file is 448 MB; `json.load` turns it into several GB of Python
objects. This reader decodes one array element at a time from a buffered text stream, so
memory holds one element and one chunk, whatever the file size.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

_CHUNK = 1 << 20
_WHITESPACE = " \t\n\r"


class _Reader:
    def __init__(self, stream: BinaryIO):
        self._stream = io.TextIOWrapper(stream, encoding="utf-8-sig")
        self._decoder = json.JSONDecoder()
        self._text = ""
        self._pos = 0
        self._eof = False
        self._consumed = 0  # Characters dropped from the buffer, for error positions.

    def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = self._stream.read(_CHUNK)
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
        """Decodes the next complete JSON value, reading more text until it is whole."""
        self.peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self._text, self._pos)
            except json.JSONDecodeError as error:
                if self._fill():
                    continue
                raise ValueError(f"{error.msg} at character {self._consumed + error.pos}") from None
            if end == len(self._text) and self._fill():
                continue  # A number may go on in the next chunk.
            self._pos = end
            return value


def iter_arrays(stream: BinaryIO, keys: set[str]) -> Iterator[tuple[str, Any]]:
    """Yields (key, element) for each element of the top-level arrays named in `keys`, in
    file order; other top-level values are decoded and dropped. Raises ValueError (after
    yielding what came before) where the document is malformed."""
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
                    yield key, reader.value()
                    if reader.expect(",]") == "]":
                        break
        else:
            reader.value()
        if reader.expect(",}") == "}":
            return
