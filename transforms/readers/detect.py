"""`--format auto`: recognising an annotation format from a path, by names and a sniff."""

from __future__ import annotations

import posixpath
import re

from apache_beam.io.filesystems import FileSystems

from transforms.readers.yolo import NAMES_FILES

_SNIFF_BYTES = 1 << 16
_EXTENSIONS = {
    ".xml": "voc",
    ".csv": "csv",
    ".yaml": "yolo",
    ".yml": "yolo",
    ".ndjson": "labelbox",
    ".txt": "yolo-keras",
}


def sniff_json(path: str) -> str:
    """Tells the JSON formats apart from the start of a file (a COCO file may be huge)."""
    with FileSystems.open(path) as handle:
        head = handle.read(_SNIFF_BYTES).decode("utf-8-sig", errors="replace").lstrip()
    if head.startswith("{"):
        # LabelMe writes `shapes` before `imagePath`, so with large shapes only theirs show.
        if '"shapes"' in head and ('"imagePath"' in head or '"shape_type"' in head):
            return "labelme"
        if '"data_row"' in head:
            return "labelbox"
        if re.search(r'"(images|annotations|categories)"\s*:', head):
            return "coco"
    if head.startswith("["):
        if '"External ID"' in head:
            return "labelbox"
        if '"coordinates"' in head or '"image"' in head:
            return "createml"
    raise ValueError(f"{path} is JSON of no known annotation format")


def _by_name(path: str) -> str:
    extension = posixpath.splitext(path)[1].lower()
    if extension == ".json":
        return sniff_json(path)
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]
    raise ValueError(f"cannot tell the annotation format of {path}")


def detect_format(path: str) -> str:
    """The format of a file, a glob (by its first match) or a folder; raises ValueError."""
    files = [m.path for m in FileSystems.match([path])[0].metadata_list] if "*" in path else []
    if files:
        return _by_name(sorted(files)[0])
    if FileSystems.exists(path) and posixpath.splitext(path)[1]:
        return _by_name(path)
    folder = path.rstrip("/")
    if any(FileSystems.exists(FileSystems.join(folder, n)) for n in ("data.yaml", *NAMES_FILES)):
        return "yolo"
    inside = sorted(
        m.path for m in FileSystems.match([FileSystems.join(folder, "*")])[0].metadata_list
    )
    for extension in (".xml", ".csv", ".ndjson", ".json", ".txt"):
        matches = [f for f in inside if f.lower().endswith(extension)]
        if matches:
            return _by_name(matches[0])
    raise ValueError(f"found no annotation files in {path}")
