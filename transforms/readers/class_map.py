"""`--class-map`: renaming, merging or dropping classes before the label map is built.

The map is YAML, old name → new name (several old names may share a new one) or → null to
drop the class. Dropped objects are counted in the manifest (`objects.dropped`), so the
accounting still adds up without filling the errors file with deliberate choices.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import apache_beam as beam

from transforms.readers.base import read_yaml
from transforms.records import ClassDeclaration, ImageAnnotation, excerpt, writable_text

DROPPED = "dropped"


def load_class_map(path: str) -> dict[str, str | None]:
    """Reads and checks a class map; raises ValueError with the problem, or OSError."""
    try:
        mapping = read_yaml(path)
    except ValueError as error:
        raise ValueError(f"not YAML: {error}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError("a class map is a YAML mapping of old name to new name or null")
    for old, new in mapping.items():
        if not writable_text(old) or not (new is None or writable_text(new) and new.strip()):
            raise ValueError(
                f"entry {excerpt(repr(old))}: {excerpt(repr(new))} is not "
                "name: new-name or name: null"
            )
    return mapping


class ApplyClassMap(beam.DoFn):
    """Renames the boxes of a mention; drops mapped-to-null boxes and counts them (tag
    `dropped`, as count dicts for the manifest)."""

    def __init__(self, mapping: dict[str, str | None]):
        self._mapping = mapping

    def process(self, mention: ImageAnnotation) -> Iterator:
        boxes, dropped = [], Counter()
        for box in mention.boxes:
            new = self._mapping.get(box.label, box.label)
            if new is None:
                dropped[box.label] += 1
            else:
                boxes.append(replace(box, label=new) if new != box.label else box)
        if dropped:
            yield beam.pvalue.TaggedOutput(DROPPED, {DROPPED: dict(dropped)})
        yield replace(mention, boxes=tuple(boxes))


def rename_declaration(
    declaration: ClassDeclaration, mapping: dict[str, str | None]
) -> Iterator[ClassDeclaration]:
    new = mapping.get(declaration.name, declaration.name)
    if new is not None:
        yield replace(declaration, name=new)
