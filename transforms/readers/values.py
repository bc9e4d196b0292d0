"""Values read from untrusted annotations, checked where they are read.

Every reader takes its numbers, lists and objects through these helpers, so a value of the
wrong kind (a list where a number belongs, `true` for a coordinate, a 400-digit integer,
`inf`) is refused with a reason that names the field and quotes the value briefly, never
with an OverflowError or TypeError from somewhere deeper. Whole documents are parsed here
too: JSON with integers of any length, YAML without anchors and aliases.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from transforms.records import INT64_MAX, INT64_MIN, excerpt

# What bytes that are not UTF-8 decode to with errors="replace".
REPLACEMENT = "\ufffd"
# Python converts at most this many digits to an int, and raises in the middle of a JSON
# document beyond it.
_INT_DIGITS = 4300


def kind(value: object) -> str:
    """What a JSON value is, as a reason says it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def number(value: object, what: str) -> float:
    """A JSON number as a finite float; raises ValueError naming `what` for anything else: a
    bool, text, a list or object, NaN, an infinity or an integer beyond floats."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} is {kind(value)}, not a number: {excerpt(value)}")
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise ValueError(f"{what} is not a finite number: {excerpt(value)}")
    return result


def parse_number(text: str, what: str) -> float:
    """Text holding a number (VOC, CSV, YOLO and keras-yolo3 fields) as a finite float;
    raises ValueError naming `what`."""
    try:
        result = float(text)
    except ValueError:
        raise ValueError(f"{what} is not a number: {excerpt(repr(text))}") from None
    if not math.isfinite(result):
        raise ValueError(f"{what} is not a finite number: {excerpt(repr(text))}")
    return result


def whole(value: object, what: str) -> int:
    """A JSON integer within int64 (ids, run lengths, mask sizes): not a bool, a float or
    text; raises ValueError naming `what`. Ids become keys of the pipeline's joins, whose
    coder holds 64 bits."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} is {kind(value)}, not an integer: {excerpt(value)}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{what} is beyond int64: {excerpt(value)}")
    return value


def parse_whole(text: str, what: str) -> int:
    """Text holding an integer within int64 (YOLO class indexes); raises ValueError."""
    try:
        value = int(text)
    except ValueError:  # Also for more digits than Python converts.
        raise ValueError(f"{what} is not an integer: {excerpt(repr(text))}") from None
    return whole(value, what)


def flag(value: object, what: str) -> bool:
    """A 0/1 or false/true flag (COCO's `iscrowd`); raises ValueError."""
    if value in (0, 1) and isinstance(value, (bool, int)):
        return bool(value)
    raise ValueError(f"{what} is not 0 or 1: {excerpt(value)}")


def declared_size(value: object) -> int | None:
    """A declared image width or height as an int, None when it is not a whole number.

    Declared sizes are only compared with the measured ones, so one that cannot be read is
    dropped; one that is whole but unusable (0, beyond int64) is kept for ReadAnnotations
    to report. Text (VOC, CSV) may hold `640` or `640.0`."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def json_object(value: object, what: str) -> dict:
    """`value` when it is a JSON object; raises ValueError naming `what`."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} is {kind(value)}, not an object")
    return value


def json_list(value: object, what: str) -> list:
    """`value` when it is a JSON list, [] when it is missing (null); raises ValueError naming
    `what` for anything else, rather than iterating a string's characters or an object's
    keys."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} is {kind(value)}, not a list")
    return value


def undecodable(value: object, keys_only: bool = False) -> bool:
    """Whether any text in `value` (a line, a JSON value) holds U+FFFD, which is what bytes
    that are not UTF-8 decode to: the element holding them is rejected, and the rest of the
    file still read. With `keys_only`, only object keys count: a row whose structure cannot
    be trusted (is `objects` one of its keys?) is rejected whole, while its values are left
    to the elements holding them. Walks without recursion, however deep the value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if REPLACEMENT in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(v for v in item.values() if not (keys_only and isinstance(v, str)))
        elif isinstance(item, (list, tuple)):
            stack.extend(v for v in item if not (keys_only and isinstance(v, str)))
    return False


def require_decoded(value: object, what: str) -> None:
    """Raises ValueError when `value` holds bytes that were not UTF-8 (see `undecodable`)."""
    if undecodable(value):
        raise ValueError(f"{what} holds bytes that are not UTF-8 text")


def _long_int(text: str) -> int | float:
    """A JSON integer of any length: up to Python's digit limit an int, beyond it an
    infinite float, which every number and id check refuses."""
    return int(text) if len(text.lstrip("-")) <= _INT_DIGITS else float(text)


_DECODER = json.JSONDecoder()
_LONG_INT_DECODER = json.JSONDecoder(parse_int=_long_int)


def decode_json(text: str, position: int = 0) -> tuple[Any, int]:
    """`json.JSONDecoder.raw_decode`, with integers of any length: Python refuses to convert
    more than 4,300 digits, which would stop the whole document. The plain decoder runs
    first; only a document holding such an integer is decoded again the slower way. Raises
    json.JSONDecodeError (a ValueError) when malformed, RecursionError when nested too
    deeply."""
    try:
        return _DECODER.raw_decode(text, position)
    except json.JSONDecodeError:
        raise
    except ValueError:
        return _LONG_INT_DECODER.raw_decode(text, position)


def load_json(text: str) -> Any:
    """A whole JSON document, as `json.loads` reads it but with integers of any length (see
    `decode_json`)."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError:
        raise
    except ValueError:
        return _LONG_INT_DECODER.decode(text)


class _PlainYamlLoader(yaml.SafeLoader):
    """YAML's safe subset without anchors and aliases.

    An alias repeats a node without copying it, so a few lines of them (a "billion laughs")
    make a value that takes gigabytes to walk. Nothing a dataset YAML, class map or config
    needs uses them, and without them a parsed value is never larger than its text."""

    def fetch_anchor(self):
        self._refuse()

    def fetch_alias(self):
        self._refuse()

    def _refuse(self):
        raise yaml.scanner.ScannerError(
            None, None, "anchors and aliases (& and *) are not accepted", self.get_mark()
        )


def load_yaml(text: str) -> Any:
    """A YAML document without anchors or aliases; raises ValueError with a one-line reason
    for anything else (malformed YAML, nesting too deep, a date that is no date, ...)."""
    try:
        return yaml.load(text, Loader=_PlainYamlLoader)  # noqa: S506 - a SafeLoader subclass.
    except RecursionError:
        raise ValueError("YAML nested too deeply") from None
    except Exception as error:  # PyYAML and its constructors raise many types.
        raise ValueError(excerpt(" ".join(str(error).split()), 160)) from None
