"""Writers of the way back: canonical records → COCO JSON, Pascal VOC XML, TF OD CSV, YOLO,
CVAT for images XML, Label Studio JSON (`labelstudio.py`).

Every writer starts from `NamedRecord`s (a decoded record and the name its image got under
`DIR/images/`) and the categories ({class name: id}), never from a TFRecord, so each format is
written once whatever the records came from. Outputs are deterministic: records are sorted
by image name and ids are assigned in that order, so the same input gives byte-identical
files. The per-image files of VOC and YOLO are named from the image name by
`annotation_file`, which the export also uses to make those names unique.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape

import apache_beam as beam
import yaml
from apache_beam.io.filesystems import FileSystems

from transforms.builds.safe_write import Ours, UnsafeWrite, write_file
from transforms.export.decode import DecodedRecord
from transforms.masks import mask_outline, mask_pixels
from transforms.readers.yolo import label_path
from transforms.records import ERRORS, Box, ErrorRecord

IMAGES_DIR = "images"
# CVAT's one annotation file, for every split.
CVAT_FILE = "annotations.xml"
# Stage of the error records of files that cannot be written.
STAGE_WRITE = "write"


@dataclass(frozen=True)
class NamedRecord:
    """A decoded record (without its image bytes), its image's name under DIR/images/, and
    the {size, sha256} of the image file written there, None when the record carries no
    image bytes."""

    name: str
    record: DecodedRecord
    image_digest: dict | None = None

    @property
    def has_image(self) -> bool:
        return self.image_digest is not None

    @property
    def split(self) -> str:
        return self.record.image.annotation.split or "all"


def pixel(value: float) -> int | float:
    """A pixel value (coordinate, size, area) as written to every format in pixels: an integer
    when the value is one within float32 precision (so VOC → TFRecord → VOC gives back the same
    corners), else 3 decimals."""
    nearest = round(value)
    return nearest if abs(value - nearest) < 1e-3 else round(value, 3)


def voc_id(name: str) -> str:
    """An image's VOC id: its name without extension, with `/` and whitespace made `_`, because
    readers look for `<id>.xml` directly in the annotations folder and ImageSets lists are
    split on whitespace."""
    return re.sub(r"[/\s]", "_", posixpath.splitext(name)[0])


def annotation_file(fmt: str, name: str) -> str | None:
    """The per-image annotation file of the image `DIR/images/<name>`, relative to DIR: VOC's
    `annotations/<id>.xml`; YOLO's label file, exactly where Ultralytics and odrecords' reader
    look for it (`label_path`); None for the formats with one file per split."""
    if fmt == "voc":
        return f"annotations/{voc_id(name)}.xml"
    if fmt == "yolo":
        return posixpath.normpath(label_path(f"./{IMAGES_DIR}/{name}"))
    return None


def write_chunks(output: str, relative: str, chunks: Iterable[str], ours: Ours) -> dict:
    """Writes text chunks to `relative` in `output` (by the rule of `transforms.builds.safe_write`:
    `ours` says which files found in place an earlier export wrote); returns the file's
    {size, sha256} for the summary, so a later export into the same folder can tell the file
    is still the one written here."""
    data = (chunk.encode("utf-8") for chunk in chunks)
    return write_file(output, _join(output, relative), data, ours)


def write_failure(error: OSError) -> str:
    """Why a file could not be written, short: a name that collides with a folder (or a folder
    with a file), one too long for the filesystem, ..."""
    while isinstance(getattr(error, "exception_details", None), dict) and error.exception_details:
        error = next(iter(error.exception_details.values()))  # Beam wraps the OSError.
    cause = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], OSError) else error
    if isinstance(cause, UnsafeWrite):
        return f"not written: {cause}"
    return f"cannot write the file: {getattr(cause, 'strerror', None) or str(cause)[:80]}"


def _join(output: str, relative: str) -> str:
    return FileSystems.join(output, *relative.split("/"))


def _sorted(records: Iterable[NamedRecord]) -> list[NamedRecord]:
    return sorted(records, key=lambda record: record.name)


# A source_id taken as a COCO image id: written the way str() writes an int.
_WHOLE_NUMBER = re.compile(r"0|[1-9][0-9]{0,18}")


def coco_image_ids(records: list[NamedRecord]) -> list[int]:
    """The COCO image id of each record: its `source_id` when every record of the split has
    a distinct one that is a whole number in int64 range (COCO's ids, which odrecords and
    TF Models' scripts write), so predictions keyed by source_id match the exported file;
    otherwise 1, 2, ... in name order, as for records named only by their file names."""
    ids = [named.record.source_id for named in records]
    numbers = all(_WHOLE_NUMBER.fullmatch(i) and int(i) < 2**63 for i in ids)
    if numbers and len(set(ids)) == len(ids):
        return [int(i) for i in ids]
    return list(range(1, len(records) + 1))


def coco_document(records: list[NamedRecord], categories: dict[str, int]) -> Iterator[str]:
    """The COCO JSON of one split, as text chunks (images, then annotations, streamed)."""
    keypoint_names: dict[str, list[str]] = {}
    for named in records:
        for box in named.record.image.annotation.boxes:
            if box.keypoints and box.label not in keypoint_names:
                keypoint_names[box.label] = [k.name for k in box.keypoints]
    coco_categories = []
    for name, number in sorted(categories.items(), key=lambda pair: pair[1]):
        category = {"id": number, "name": name, "supercategory": ""}
        if name in keypoint_names:
            category["keypoints"] = keypoint_names[name]
        coco_categories.append(category)
    yield '{"info": {"description": "exported by odrecords"}, "licenses": [],\n"images": ['
    image_ids = coco_image_ids(records)
    for number, (named, image_id) in enumerate(zip(records, image_ids, strict=True), start=1):
        image = named.record.image
        entry = {
            "id": image_id,
            "file_name": named.name,
            "width": image.width,
            "height": image.height,
        }
        yield ("," if number > 1 else "") + "\n" + json.dumps(entry, ensure_ascii=False)
    yield '],\n"annotations": ['
    annotation_id = 0
    for named, image_id in zip(records, image_ids, strict=True):
        for box in named.record.image.annotation.boxes:
            annotation_id += 1
            xmin, ymin, xmax, ymax = (pixel(v) for v in (box.xmin, box.ymin, box.xmax, box.ymax))
            width, height = pixel(xmax - xmin), pixel(ymax - ymin)
            entry = {
                "id": annotation_id,
                "image_id": image_id,
                "category_id": categories[box.label],
                "bbox": [xmin, ymin, width, height],
                "area": pixel(box.area if box.area is not None else width * height),
                "iscrowd": int(bool(box.is_crowd)),
                "segmentation": (
                    {"size": list(box.mask.rle_size), "counts": box.mask.rle_counts}
                    if box.mask is not None
                    else []
                ),
            }
            if box.keypoints:
                entry["keypoints"] = [
                    v for k in box.keypoints for v in (pixel(k.x), pixel(k.y), k.visibility)
                ]
                entry["num_keypoints"] = sum(k.visibility > 0 for k in box.keypoints)
            yield ("," if annotation_id > 1 else "") + "\n" + json.dumps(entry, ensure_ascii=False)
    yield '],\n"categories": ' + json.dumps(coco_categories, ensure_ascii=False) + "}\n"


def voc_xml(named: NamedRecord) -> str:
    """Pascal VOC XML of one image, as LabelImg writes it."""
    image = named.record.image
    lines = [
        "<annotation>",
        f"  <folder>{IMAGES_DIR}</folder>",
        f"  <filename>{escape(named.name)}</filename>",
        f"  <size><width>{image.width}</width><height>{image.height}</height>"
        "<depth>3</depth></size>",
    ]
    for box in image.annotation.boxes:
        lines += [
            "  <object>",
            f"    <name>{escape(box.label)}</name>",
            f"    <pose>{escape(box.view or 'Unspecified')}</pose>",
            f"    <truncated>{int(box.truncated)}</truncated>",
            f"    <difficult>{int(box.difficult)}</difficult>",
            f"    <bndbox><xmin>{pixel(box.xmin)}</xmin><ymin>{pixel(box.ymin)}</ymin>"
            f"<xmax>{pixel(box.xmax)}</xmax><ymax>{pixel(box.ymax)}</ymax></bndbox>",
            "  </object>",
        ]
    return "\n".join(lines + ["</annotation>"]) + "\n"


# Characters XML 1.0 cannot hold, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTRIBUTE_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
# The box attributes records keep, named as CVAT's VOC and COCO formats name them, with the
# input type CVAT gives them.
CVAT_ATTRIBUTES = {
    "difficult": "checkbox",
    "truncated": "checkbox",
    "pose": "text",
    "is_crowd": "checkbox",
}


def xml_text(text: str, attribute: bool = False) -> str:
    """`text` escaped for XML (for a double-quoted attribute value with `attribute`);
    characters XML 1.0 cannot hold at all are written as backslash escapes."""
    text = _NOT_XML.sub(lambda found: found.group().encode("unicode_escape").decode(), text)
    return escape(text, _ATTRIBUTE_ENTITIES if attribute else {})


def _cvat_values(box: Box) -> dict[str, str]:
    """A box's attribute values as CVAT writes them (checkboxes `true` or `false`)."""
    flags = {"difficult": box.difficult, "truncated": box.truncated, "is_crowd": box.is_crowd}
    return {
        **{name: "true" if value else "false" for name, value in flags.items()},
        "pose": box.view,
    }


def _cvat_attribute(name: str) -> str:
    """An attribute's spec in a label of `<meta>`; a checkbox's one value is its default."""
    default = "false" if CVAT_ATTRIBUTES[name] == "checkbox" else ""
    return (
        "            <attribute>\n"
        f"              <name>{name}</name>\n"
        "              <mutable>False</mutable>\n"
        f"              <input_type>{CVAT_ATTRIBUTES[name]}</input_type>\n"
        f"              <default_value>{default}</default_value>\n"
        f"              <values>{default}</values>\n"
        "            </attribute>\n"
    )


def _cvat_labels(categories: dict[str, int], attributes: list[str]) -> Iterator[str]:
    """`<labels>` of the task's `<meta>`, in label map id order, each with `attributes`."""
    specs = "".join(_cvat_attribute(name) for name in attributes)
    yield "      <labels>\n"
    for name in sorted(categories, key=categories.get):
        yield (
            f"        <label>\n          <name>{xml_text(name)}</name>\n"
            f"          <type>any</type>\n          <attributes>\n{specs}"
            "          </attributes>\n        </label>\n"
        )
    yield "      </labels>\n"


def cvat_document(records: list[NamedRecord], categories: dict[str, int]) -> Iterator[str]:
    """CVAT for images 1.1 XML of every record, as text chunks, as CVAT exports a task:
    `<meta>` declares the labels and the attributes any box sets, and each `<image>` (ids in
    name order) names its split as `subset`, as CVAT's project exports do, and holds a
    `<box>` per object. Masks are not written: a CVAT mask's box is its pixels' extent, which
    would not give back the records' boxes."""
    boxes = [box for named in records for box in named.record.image.annotation.boxes]
    attributes = [
        name
        for name in CVAT_ATTRIBUTES
        if any(_cvat_values(box)[name] not in ("false", "") for box in boxes)
    ]
    yield (
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n'
        "  <meta>\n    <task>\n      <name>odrecords export</name>\n"
        f"      <size>{len(records)}</size>\n      <mode>annotation</mode>\n"
    )
    yield from _cvat_labels(categories, attributes)
    yield "    </task>\n  </meta>\n"
    for number, named in enumerate(records):
        image = named.record.image
        yield (
            f'  <image id="{number}" name="{xml_text(named.name, True)}" '
            f'subset="{xml_text(named.split, True)}" width="{image.width}" '
            f'height="{image.height}">\n'
        )
        for box in image.annotation.boxes:
            corners = (pixel(v) for v in (box.xmin, box.ymin, box.xmax, box.ymax))
            xtl, ytl, xbr, ybr = corners
            values = _cvat_values(box)
            yield (
                f'    <box label="{xml_text(box.label, True)}" occluded="0" xtl="{xtl}" '
                f'ytl="{ytl}" xbr="{xbr}" ybr="{ybr}" z_order="0">\n'
                + "".join(
                    f'      <attribute name="{name}">{xml_text(values[name])}</attribute>\n'
                    for name in attributes
                )
                + "    </box>\n"
            )
        yield "  </image>\n"
    yield "</annotations>\n"


def csv_text(records: list[NamedRecord]) -> str:
    """TF OD CSV rows of one split; an image without objects gets a row with empty class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
    for named in records:
        image = named.record.image
        for box in image.annotation.boxes:
            corners = [pixel(v) for v in (box.xmin, box.ymin, box.xmax, box.ymax)]
            writer.writerow([named.name, image.width, image.height, box.label, *corners])
        if not image.annotation.boxes:
            writer.writerow([named.name, image.width, image.height, "", "", "", "", ""])
    return buffer.getvalue()


def _rectangle(box: Box, width: int, height: int) -> list[float]:
    """The box's corners as a normalized polygon."""
    corners = (
        (box.xmin, box.ymin),
        (box.xmax, box.ymin),
        (box.xmax, box.ymax),
        (box.xmin, box.ymax),
    )
    return [value for x, y in corners for value in (x / width, y / height)]


def _placed(value: float, low: int, high: int, first: float, last: float) -> float:
    """An outline coordinate between `low` and `high`, the outline's extent, placed in the
    box's `first` to `last`: the extremes onto the box's edges, the rest kept inside."""
    if value == low:
        return first
    return last if value == high else min(max(value, first), last)


def yolo_polygon(box: Box, width: int, height: int) -> list[float] | None:
    """The box's mask as a YOLO segmentation polygon, normalized: the mask's outline
    (`mask_outline`), with the points on its outermost columns and rows moved onto the box's
    edges and every other point kept inside the box, so that the polygon's extent, which
    Ultralytics and odrecords take as the box, is the box as recorded. A mask one pixel wide
    or high is outlined by the box's corners; None when the box has no mask pixels."""
    if box.mask is None:
        return None
    outline = mask_outline(mask_pixels(box.mask, width, height))
    if not outline:
        return None
    xs, ys = [x for x, _ in outline], [y for _, y in outline]
    left, right, top, bottom = min(xs), max(xs), min(ys), max(ys)
    if left == right or top == bottom:
        return _rectangle(box, width, height)
    return [
        coordinate
        for x, y in outline
        for coordinate in (
            _placed(x, left, right, box.xmin, box.xmax) / width,
            _placed(y, top, bottom, box.ymin, box.ymax) / height,
        )
    ]


def yolo_labels(named: NamedRecord, categories: dict[str, int]) -> str:
    """One line per object, classes in id order: `class x1 y1 ... xn yn` polygons when some
    object of the image has a mask (`yolo_polygon`; an object without one is outlined by its
    box, as Ultralytics reads every line of a file as a polygon once one is), else
    `class x_center y_center width height` boxes; normalized."""
    order = {name: index for index, name in enumerate(sorted(categories, key=categories.get))}
    image = named.record.image
    boxes = image.annotation.boxes
    polygons = [yolo_polygon(box, image.width, image.height) for box in boxes]
    lines = []
    for box, polygon in zip(boxes, polygons, strict=True):
        if any(polygons):
            values = polygon or _rectangle(box, image.width, image.height)
            lines.append(f"{order[box.label]} " + " ".join(f"{v:.10g}" for v in values))
            continue
        cx = (box.xmin + box.xmax) / 2 / image.width
        cy = (box.ymin + box.ymax) / 2 / image.height
        w = (box.xmax - box.xmin) / image.width
        h = (box.ymax - box.ymin) / image.height
        lines.append(f"{order[box.label]} {cx:.10g} {cy:.10g} {w:.10g} {h:.10g}")
    return "".join(line + "\n" for line in lines)


def yolo_split_key(split: str) -> str:
    """The data.yaml key Ultralytics knows for a split name."""
    lowered = split.lower()
    if lowered.startswith("val"):
        return "val"
    if lowered.startswith("test"):
        return "test"
    return "train" if lowered.startswith("train") else split


def split_file(fmt: str, split: str) -> str:
    """The file of one split in format `fmt`, relative to the export's folder."""
    return {
        "coco": f"annotations/instances_{split}.json",
        "csv": f"{split}_labels.csv",
        "voc": f"ImageSets/Main/{split}.txt",
        "yolo": f"{split}.txt",
        "labelstudio": f"annotations/{split}.json",
        "cvat": CVAT_FILE,
    }[fmt]


class _WriteSplitFiles(beam.DoFn):
    """(split, records) → the split's file of one format; yields (relative path, digest).
    `earlier` lists the files of an earlier export in `output`, which may be replaced."""

    def __init__(self, output: str, fmt: str, earlier: dict[str, dict]):
        self._output = output
        self._format = fmt
        self._earlier = earlier

    def process(self, element, categories: dict[str, int]) -> Iterator[str]:
        split, records = element
        records = _sorted(records)
        if self._format == "coco":
            chunks = coco_document(records, categories)
        elif self._format == "csv":
            chunks = [csv_text(records)]
        elif self._format == "voc":
            chunks = (voc_id(r.name) + "\n" for r in records)
        elif self._format == "labelstudio":
            from transforms.export.labelstudio import labelstudio_document  # It imports this.

            chunks = labelstudio_document(records)
        else:  # yolo
            # Ultralytics takes `./` lines from the list's folder, others from where it runs.
            chunks = (f"./{IMAGES_DIR}/{r.name}\n" for r in records)
        relative = split_file(self._format, split)
        yield relative, write_chunks(self._output, relative, chunks, self._earlier.__contains__)


class _WriteImageFiles(beam.DoFn):
    """One annotation file per image (VOC XML, YOLO labels): (relative path, digest), or an
    error record when the file cannot be written (its name is taken by a folder, a link is
    on its way, ...)."""

    def __init__(self, output: str, fmt: str, earlier: dict[str, dict]):
        self._output = output
        self._format = fmt
        self._earlier = earlier

    def process(self, named: NamedRecord, categories: dict[str, int]) -> Iterator:
        relative = annotation_file(self._format, named.name)
        text = voc_xml(named) if self._format == "voc" else yolo_labels(named, categories)
        try:
            yield relative, write_chunks(self._output, relative, [text], self._earlier.__contains__)
        except OSError as error:
            annotation = named.record.image.annotation
            yield beam.pvalue.TaggedOutput(
                ERRORS,
                ErrorRecord(
                    annotation.sources[0],
                    named.name,
                    STAGE_WRITE,
                    f"{relative[:80]}: {write_failure(error)}",
                    len(annotation.boxes),
                ),
            )


def _yolo_data_yaml(
    splits: list[str], output: str, earlier: dict[str, dict], categories: dict[str, int]
) -> tuple[str, dict]:
    """Without `path`, Ultralytics' root is the YAML's folder; `path: .` would be the folder
    it runs in."""
    config = {
        "names": sorted(categories, key=categories.get),
        **{yolo_split_key(split): f"{split}.txt" for split in sorted(splits)},
    }
    text = yaml.safe_dump(config, allow_unicode=True, sort_keys=False)
    return "data.yaml", write_chunks(output, "data.yaml", [text], earlier.__contains__)


def _cvat_file(
    records: list[NamedRecord], output: str, earlier: dict[str, dict], categories: dict[str, int]
) -> tuple[str, dict]:
    chunks = cvat_document(_sorted(records), categories)
    return CVAT_FILE, write_chunks(output, CVAT_FILE, chunks, earlier.__contains__)


class WriteExport(beam.PTransform):
    """NamedRecords → the annotation files of `fmt` under `output`; outputs `files`, their
    (relative path, digest), and `errors`, the records whose annotation file could not be
    written. `earlier` lists the files an earlier export in `output` wrote, which may be
    replaced (see `transforms.builds.safe_write`)."""

    def __init__(
        self,
        output: str,
        fmt: str,
        categories: beam.pvalue.AsSingleton,
        earlier: dict[str, dict],
    ):
        super().__init__()
        self._output = output
        self._format = fmt
        self._categories = categories
        self._earlier = earlier

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        if self._format == "cvat":  # One file for every split.
            cvat = (
                records
                | "AllRecords" >> beam.combiners.ToList()
                | "CvatFile" >> beam.Map(_cvat_file, self._output, self._earlier, self._categories)
            )
            return {"files": cvat, "errors": [] | beam.Flatten(pipeline=records.pipeline)}
        by_split = (
            records
            | "BySplit" >> beam.Map(lambda named: (named.split, named))
            | "GroupSplit" >> beam.GroupByKey()
        )
        files = [
            by_split
            | "SplitFiles"
            >> beam.ParDo(
                _WriteSplitFiles(self._output, self._format, self._earlier), self._categories
            )
        ]
        errors = []
        if self._format in ("voc", "yolo"):
            image_files = records | "ImageFiles" >> beam.ParDo(
                _WriteImageFiles(self._output, self._format, self._earlier), self._categories
            ).with_outputs(ERRORS, main="files")
            files.append(image_files.files)
            errors.append(image_files[ERRORS])
        if self._format == "yolo":
            files.append(
                by_split
                | "SplitNames" >> beam.Map(lambda element: element[0])
                | "AllSplits" >> beam.combiners.ToList()
                | "DataYaml"
                >> beam.Map(_yolo_data_yaml, self._output, self._earlier, self._categories)
            )
        return {
            "files": files | "AllFiles" >> beam.Flatten(),
            "errors": errors | "AllErrors" >> beam.Flatten(pipeline=records.pipeline),
        }
