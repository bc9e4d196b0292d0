"""Pascal VOC XML: one `<annotation>` file per image, as LabelImg and the VOC devkit write them.

Annotation files are untrusted: the parser resolves no entities, loads no DTD and opens no
network connection, so XXE and entity-expansion payloads come through as inert text.
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from transforms.paths import UnsafePathError, image_key
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def _text(element: etree._Element, path: str) -> str:
    return (element.findtext(path) or "").strip()


def _optional_int(element: etree._Element, path: str) -> int | None:
    try:
        return int(float(_text(element, path)))
    except ValueError:
        return None


def _flag(element: etree._Element, path: str) -> bool:
    return _text(element, path).lower() in ("1", "true", "yes")


def _parse_object(element: etree._Element, source: str) -> Box:
    """Raises ValueError naming the missing or non-numeric part of an `<object>`."""
    label = _text(element, "name")
    if not label:
        raise ValueError("object has no <name>")
    box = element.find("bndbox")
    if box is None:
        raise ValueError(f"object {label!r} has no <bndbox>")
    corners = {}
    for corner in ("xmin", "ymin", "xmax", "ymax"):
        value = _text(box, corner)
        try:
            corners[corner] = float(value)
        except ValueError:
            raise ValueError(f"object {label!r} has a non-numeric <{corner}> {value!r}") from None
    return Box(
        label=label,
        source=source,
        difficult=_flag(element, "difficult"),
        truncated=_flag(element, "truncated"),
        view=_text(element, "pose"),
        **corners,
    )


def parse_voc(data: bytes, source: str) -> Iterator[ImageAnnotation | ErrorRecord]:
    """Yields the file's image annotation and an error record for each part it rejects."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as error:
        yield ErrorRecord(source, None, STAGE_READ, f"malformed XML: {error}")
        return
    if root.tag != "annotation":
        yield ErrorRecord(
            source, None, STAGE_READ, f"root element is <{root.tag}>, not <annotation>"
        )
        return
    objects = root.findall("object")
    try:
        key = image_key(_text(root, "filename"))
    except UnsafePathError as error:
        yield ErrorRecord(
            source, _text(root, "filename") or None, STAGE_READ, str(error), len(objects)
        )
        return
    boxes = []
    for index, element in enumerate(objects, start=1):
        object_source = f"{source}#object[{index}]"
        try:
            boxes.append(_parse_object(element, object_source))
        except ValueError as error:
            yield ErrorRecord(object_source, key, STAGE_READ, str(error), 1)
    yield ImageAnnotation(
        image=key,
        sources=(source,),
        boxes=tuple(boxes),
        width=_optional_int(root, "size/width"),
        height=_optional_int(root, "size/height"),
    )
