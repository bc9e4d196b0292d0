"""`--format auto`: recognising an annotation format from a path, by names and a sniff.

A folder is recognised from the files directly in it or, when those say nothing, from its
immediate sub-folders: a Roboflow download keeps its annotations in `train/`, `valid/` and
`test/`, with only README.roboflow.txt and README.dataset.txt at the top. Documentation
(README, licence) is never taken for annotations, and a `.txt` file counts only by what its
lines are: keras-yolo3 lines (`path x1,y1,x2,y2,class ...`), YOLO label lines or KITTI
labels; a `.csv` by its first row. An `.xml` file is CVAT's when its root is `<annotations>`
followed by `<version>` or `<meta>`, else VOC.
"""

from __future__ import annotations

import posixpath
import re

from apache_beam.io.filesystems import FileSystems

from transforms.paths import open_regular
from transforms.readers.csv_rows import first_row
from transforms.readers.cvat import looks_like_cvat
from transforms.readers.yolo import NAMES_FILES

_SNIFF_BYTES = 1 << 16
# Files of one kind read at most per folder: a Darknet folder holds a label file per image,
# and an empty one (an image without objects) says nothing.
_SNIFF_FILES = 20
# Annotation file extensions in the order a folder's files are tried, with the format they
# mean; JSON and text files are told apart by what they hold.
_EXTENSIONS = {
    ".xml": "xml",
    ".csv": "csv",
    ".ndjson": "labelbox",
    ".json": "json",
    ".txt": "txt",
}
_YOLO_CONFIGS = ("data.yaml", "data.yml")
_DARKNET_NAMES = ("obj.names", "_darknet.labels")
_DOCUMENTATION = re.compile(r"^(readme|licen[cs]e|copying|notice|changelog)([._-]|$)", re.I)
# Roboflow's name for a split's keras-yolo3 file.
_KERAS_FILE = "_annotations.txt"
_NUMBER = r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_KERAS_BOX = re.compile(rf"^{_NUMBER}(?:,{_NUMBER}){{3}},\d+$")
_YOLO_LINE = re.compile(rf"^\d+(?:\s+{_NUMBER}){{4,}}$")
# Keys only Label Studio's exports have: a full export's task `data` and its regions, or a
# JSON-MIN record's annotation id.
_LABEL_STUDIO = re.compile(
    r'"(rectanglelabels|polygonlabels|brushlabels|original_width|was_cancelled|from_name|'
    r'annotation_id)"\s*:|"data"\s*:\s*\{'
)
# KITTI: a type name, then 14 numbers (15 with a score).
_KITTI_LINE = re.compile(rf"^[A-Za-z_]\S*(?:\s+{_NUMBER}){{14,15}}$")
_NUMBER_OR_EMPTY = re.compile(rf"^\s*(?:{_NUMBER})?\s*$")
_TF_CSV_COLUMNS = {"filename", "class", "xmin", "ymin", "xmax", "ymax"}
_OPEN_IMAGES_COLUMNS = {"ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax"}


def is_documentation(path: str) -> bool:
    """README.roboflow.txt, README.dataset.txt, LICENSE, ...: text about a dataset."""
    return bool(_DOCUMENTATION.match(posixpath.basename(path)))


def _head_lines(path: str) -> list[str]:
    """The complete, non-empty lines at the start of a file."""
    with open_regular(path) as handle:
        head = handle.read(_SNIFF_BYTES)
    text = head.decode("utf-8-sig", errors="replace")
    lines = text.splitlines()
    if len(head) == _SNIFF_BYTES:
        lines = lines[:-1]  # Cut off where the sniff stopped reading.
    return [line.strip() for line in lines if line.strip()]


def sniff_text(path: str) -> str | None:
    """`yolo-keras` for Roboflow's `_annotations.txt` or a file of keras-yolo3 lines, `yolo`
    for YOLO label lines, None for anything else (class lists, image lists, prose)."""
    if posixpath.basename(path) == _KERAS_FILE:
        return "yolo-keras"
    if is_documentation(path):
        return None
    lines = _head_lines(path)
    if not lines:
        return None
    fields = [line.split() for line in lines]
    if all(all(_KERAS_BOX.match(box) for box in f[1:]) for f in fields) and any(
        len(f) > 1 for f in fields
    ):
        return "yolo-keras"
    if all(_YOLO_LINE.match(line) for line in lines):
        return "yolo"
    if all(_KITTI_LINE.match(line) for line in lines):
        return "kitti"
    return None


def sniff_csv(path: str) -> str | None:
    """The CSV formats by their first row: the TF Object Detection CSV's header, Open Images'
    box header, or RetinaNet's header-less `path,x1,y1,x2,y2,class` (corners numbers, or all
    empty for an image without objects); None for any other CSV (a class list, Open Images'
    image list, VIA's CSV export), so a folder's other files are looked at first."""
    with open_regular(path) as handle:
        row = first_row(handle)
    names = {cell.strip() for cell in row}
    if _TF_CSV_COLUMNS <= names:
        return "csv"
    if _OPEN_IMAGES_COLUMNS <= names:
        return "open-images"
    if len(row) >= 6 and all(_NUMBER_OR_EMPTY.match(cell) for cell in row[1:5]):
        return "retinanet-csv"
    return None


def sniff_json(path: str) -> str:
    """Tells the JSON formats apart from the start of a file (a COCO file may be huge)."""
    with open_regular(path) as handle:
        head = handle.read(_SNIFF_BYTES).decode("utf-8-sig", errors="replace").lstrip()
    if head.startswith("{"):
        # VIA: a project, or its export keyed by file name and size.
        entry = '"regions"' in head and '"filename"' in head
        if '"_via_img_metadata"' in head or (
            entry and ('"file_attributes"' in head or '"shape_attributes"' in head)
        ):
            return "via"
        # LabelMe writes `shapes` before `imagePath`, so with large shapes only theirs show.
        if '"shapes"' in head and ('"imagePath"' in head or '"shape_type"' in head):
            return "labelme"
        if '"data_row"' in head:
            return "labelbox"
        if _LABEL_STUDIO.search(head):
            return "labelstudio"
        if re.search(r'"(images|annotations|categories)"\s*:', head):
            return "coco"
    if head.startswith("["):
        if '"External ID"' in head:
            return "labelbox"
        if _LABEL_STUDIO.search(head):
            return "labelstudio"
        if '"coordinates"' in head or '"image"' in head:
            return "createml"
    raise ValueError(f"{path} is JSON of no known annotation format")


def _by_name(path: str) -> str | None:
    """The format of one file, None when it holds no annotations of a known kind."""
    extension = posixpath.splitext(path)[1].lower()
    if extension in (".yaml", ".yml"):
        return "yolo"
    kind = _EXTENSIONS.get(extension)
    if kind == "xml":
        return "cvat" if looks_like_cvat(path) else "voc"
    if kind == "json":
        return sniff_json(path)
    if kind == "txt":
        return sniff_text(path)
    if kind == "csv":
        return sniff_csv(path)
    return kind


def _first_known(files: list[str]) -> str | None:
    """The format of the first of `files` that is an annotation file of a known format;
    files that are not (an unrelated JSON, a list of image names, a FIFO) are passed over."""
    for path in files:
        try:
            found = _by_name(path)
        except (OSError, ValueError):
            continue
        if found:
            return found
    return None


def _in_folder(folder: str) -> str | None:
    """The format of the annotations directly in `folder`, None when it holds none."""
    files = sorted(
        m.path for m in FileSystems.match([FileSystems.join(folder, "*")])[0].metadata_list
    )
    names = {posixpath.basename(path) for path in files}
    # A Darknet names file says YOLO labels are beside the images, even where a download
    # also carries another format's files (`classes.txt` is keras-yolo3's name too).
    if names & {*_YOLO_CONFIGS, *_DARKNET_NAMES}:
        return "yolo"
    for extension in _EXTENSIONS:
        matches = [f for f in files if f.lower().endswith(extension) and not is_documentation(f)]
        # Roboflow's keras file first; a Darknet folder holds a label file per image.
        matches.sort(key=lambda f: posixpath.basename(f) != _KERAS_FILE)
        found = _first_known(matches[:_SNIFF_FILES])
        if found:
            return found
    # CSV files of no known kind, beside no other annotations: the TF CSV's check says what
    # their first rows lack.
    if any(f.lower().endswith(".csv") and not is_documentation(f) for f in files):
        return "csv"
    # Class names without annotation files beside them: labels are in sub-folders, the
    # Ultralytics way (labels/train/...).
    return "yolo" if names & set(NAMES_FILES) else None


def _sub_folders(folder: str) -> list[str]:
    """The immediate sub-folders of `folder` that hold files (object stores have no empty
    folders to list, so they are found from the files)."""
    pattern = FileSystems.join(folder, "*", "*")
    files = FileSystems.match([pattern])[0].metadata_list
    return sorted({posixpath.dirname(m.path) for m in files})


def detect_format(path: str) -> str:
    """The format of a file, a glob (by its first matches) or a folder; raises ValueError."""
    if any(c in path for c in "*?["):
        files = sorted(m.path for m in FileSystems.match([path])[0].metadata_list)
        found = _first_known([f for f in files if not is_documentation(f)][:_SNIFF_FILES])
        if found:
            return found
        raise ValueError(f"found no annotation files of a known format matching {path}")
    if FileSystems.exists(path) and posixpath.splitext(path)[1]:
        found = _by_name(path)
        if found:
            return found
        if path.lower().endswith(".csv"):
            return "csv"  # Named alone: the TF CSV's check says what its first row lacks.
        raise ValueError(f"cannot tell the annotation format of {path}")
    folder = path.rstrip("/")
    for candidate in [folder, *_sub_folders(folder)]:
        found = _in_folder(candidate)
        if found:
            return found
    # KITTI's root: `training/label_2/`, or a folder per split, one level further down.
    nested = FileSystems.match([FileSystems.join(folder, "*", "label_2", "*.txt")])[0]
    labels = sorted(m.path for m in nested.metadata_list)[:_SNIFF_FILES]
    if _first_known(labels) == "kitti":
        return "kitti"
    raise ValueError(f"found no annotation files in {path} nor in its sub-folders")


# The names a dataset's folder of images goes by (Pascal VOC's: JPEGImages).
_IMAGE_FOLDERS = ("images", "Images", "JPEGImages", "imgs", "img")


def images_folder_near(annotations: str, missing: str, tried: str) -> str | None:
    """A folder named like a folder of images (`images`, `JPEGImages`, ...) inside the
    annotations' folder, beside it or one level up, other than `tried`, that holds the image
    `missing` (a key not found under `tried`); None when none does. A dataset root or an
    annotations folder given without --images (`annotations/` beside `images/`) has every
    image looked for in the wrong place: this names the right one, checked, not guessed."""
    start = annotations.rstrip("/")
    while any(c in start for c in "*?["):
        start = posixpath.dirname(start)
    parent = posixpath.dirname(start)
    # The key, and its ends without leading folders: an image looked for beside its
    # annotation file (`annotations/raccoon-1.jpg` under a dataset root) is named by the
    # annotation alone once --images is given.
    parts = missing.split("/")
    keys = [parts[first:] for first in range(len(parts))]
    for base in dict.fromkeys([start, parent, posixpath.dirname(parent)]):
        for name in _IMAGE_FOLDERS:
            folder = FileSystems.join(base, name)
            if folder != tried.rstrip("/") and any(
                FileSystems.exists(FileSystems.join(folder, *key)) for key in keys
            ):
                return folder
    return None
