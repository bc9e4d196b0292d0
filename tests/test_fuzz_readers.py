"""Property-based fuzzing of every reader: any bytes, and documents shaped like each format
whose every field may hold any value (any JSON value, any XML text, any CSV cell, any label
line), give image annotations, error records and class declarations, never an exception.
Where the file itself is well-formed, the objects add up: each object in the input is a box
or is counted by an error record. YAML (data.yaml, class maps, configs) gives a dataset or
one usage error. Derandomized and bounded, so every run tries the same inputs quickly."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections import defaultdict
from unittest import mock
from xml.sax.saxutils import escape

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that
from conftest import local_pipeline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.flags import UsageError
from pipelines.settings import _load_config
from transforms.readers import formats
from transforms.readers.base import ReaderOptions, UnusableSource
from transforms.readers.class_map import load_class_map
from transforms.readers.coco import CATEGORIES, IMAGES, OBJECTS, _JoinImage, _StreamCocoFile
from transforms.readers.createml import parse_createml
from transforms.readers.labelbox import parse_labelbox
from transforms.readers.labelme import parse_labelme
from transforms.readers.read_annotations import ReadAnnotations
from transforms.readers.tf_csv import parse_tf_csv
from transforms.readers.voc import ListedStems, parse_voc
from transforms.readers.yolo import _ListImages, load_dataset, parse_yolo_labels
from transforms.readers.yolo_keras import parse_keras_file
from transforms.records import ERRORS, ClassDeclaration, ErrorRecord, Extras, ImageAnnotation

FUZZ = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROOT = "/data"
OPTIONS = ReaderOptions(
    images=ROOT,
    images_beside_annotations=True,
    annotations_root=ROOT,
    extras=Extras(masks=True, keypoints=True),
    class_names=("cat", "dog"),
)
HUGE = 10**400
DEEP = b"[" * 100_000 + b"]" * 100_000

# Bytes as hostile files hold them: anything, and a few that have broken readers before.
hostile_bytes = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [b"", b"\xff\xfe", b"\xef\xbb\xbf", DEEP, b"{" * 5000, b"9" * 5000, b'{"a": ' + b"9" * 5000]
    ),
)
names = st.sampled_from(
    ["a.jpg", "dir/b.png", "", " ", "../x.jpg", "/etc/passwd", "a\x00.jpg", "\ufffd.jpg", "."]
)
# Any JSON value, including those that have broken readers before.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([HUGE, -HUGE, 2**63, 2**64, -(2**63) - 1, 0, 1, 2, -1, 1e308]),
    st.floats(),
    st.text(max_size=12),
    names,
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


def either(valid) -> st.SearchStrategy:
    """A field's plausible values, or any JSON value at all."""
    return st.one_of(valid, json_values)


def fields(**strategies) -> st.SearchStrategy:
    """An object with some of these fields, each plausible or anything."""
    return st.fixed_dictionaries({}, optional={k: either(v) for k, v in strategies.items()})


numbers = st.one_of(st.integers(-5, 60), st.floats(-5, 60))
coordinates = st.lists(numbers, min_size=4, max_size=4)


def check(records) -> tuple[int, list]:
    """Consumes `records`, requiring only canonical records; returns the objects they account
    for (boxes and errors' lost objects) and the records."""
    records = list(records)
    objects = 0
    for record in records:
        assert isinstance(record, ImageAnnotation | ErrorRecord | ClassDeclaration), record
        if isinstance(record, ImageAnnotation):
            objects += len(record.boxes)
        elif isinstance(record, ErrorRecord):
            objects += record.objects
            assert len(record.reason) <= 200, record.reason
    return objects, records


def mutated(data: bytes) -> st.SearchStrategy:
    """`data`, or it with a byte replaced by something a reader must survive, or cut."""
    return st.one_of(
        st.just(data),
        st.builds(
            lambda at, insert, cut: (data[:at] + insert + data[at + 1 :])[: cut or None],
            st.integers(0, max(len(data) - 1, 0)),
            st.sampled_from([b"\xff", b"\x00", b'"', b"[", b"<", b","]),
            st.integers(0, len(data)),
        ),
    )


def fuzz_file(strategy: st.SearchStrategy, serialize) -> st.SearchStrategy:
    """(bytes, objects in them or None when the bytes were changed after serializing)."""
    return st.one_of(
        hostile_bytes.map(lambda data: (data, None)),
        strategy.map(serialize).flatmap(
            lambda pair: mutated(pair[0]).map(lambda d: (d, pair[1] if d == pair[0] else None))
        ),
    )


def assert_accounted(data: tuple[bytes, int | None], objects: int, records: list) -> None:
    """Every object of a file as it was serialized is a box or counted by an error record.
    XML is the exception: text with characters XML cannot hold (NUL, U+FFFE) makes the file
    malformed, and a malformed file cannot say how many objects it held."""
    malformed = any(getattr(r, "reason", "").startswith("malformed XML") for r in records)
    if data[1] is not None and not malformed:
        assert objects == data[1], records


# VOC: XML with any text in each element.
xml_texts = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10),
    st.sampled_from(["inf", "-inf", "nan", "1e999", "9" * 400, "12.5", "0", "-3", "true"]),
    names,
)
voc_objects = st.fixed_dictionaries(
    {"name": xml_texts},
    optional={
        "bndbox": st.fixed_dictionaries(
            {}, optional=dict.fromkeys(("xmin", "ymin", "xmax", "ymax"), xml_texts)
        ),
        "difficult": xml_texts,
        "truncated": xml_texts,
        "pose": xml_texts,
    },
)
voc_documents = st.fixed_dictionaries(
    {"objects": st.lists(voc_objects, max_size=4)},
    optional={
        "filename": xml_texts,
        "size": st.fixed_dictionaries({"width": xml_texts, "height": xml_texts}),
    },
)


def element(tag: str, value) -> str:
    if isinstance(value, dict):
        return f"<{tag}>{''.join(element(k, v) for k, v in value.items())}</{tag}>"
    return f"<{tag}>{escape(value)}</{tag}>"


def voc_xml(document: dict) -> tuple[bytes, int]:
    parts = [element(k, v) for k, v in document.items() if k != "objects"]
    parts += [element("object", obj) for obj in document["objects"]]
    return f"<annotation>{''.join(parts)}</annotation>".encode(), len(document["objects"])


@FUZZ
@given(fuzz_file(voc_documents, voc_xml))
def test_voc(data):
    objects, records = check(parse_voc(data[0], f"{ROOT}/a.xml", OPTIONS))
    assert_accounted(data, objects, records)


# CSV: rows of any cells.
cells = st.one_of(xml_texts, st.text(max_size=8), st.just("x" * 200_000))
csv_rows = st.lists(st.lists(cells, min_size=8, max_size=8), max_size=5)
_BOX_COLUMNS = slice(3, 8)


def csv_file(rows: list[list[str]]) -> tuple[bytes, int]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
    writer.writerows(rows)
    boxes = sum(any(cell.strip() for cell in row[_BOX_COLUMNS]) for row in rows)
    return buffer.getvalue().encode("utf-8", "surrogatepass"), boxes


@FUZZ
@given(fuzz_file(csv_rows, csv_file))
def test_csv(data):
    objects, records = check(parse_tf_csv(io.BytesIO(data[0]), f"{ROOT}/l.csv", OPTIONS))
    assert_accounted(data, objects, records)


# COCO: images, annotations and categories whose every field may hold anything.
coco_images = fields(id=st.integers(1, 3), file_name=names, width=numbers, height=numbers)
coco_annotations = fields(
    id=st.integers(1, 9),
    image_id=st.integers(1, 3),
    category_id=st.integers(1, 3),
    bbox=coordinates,
    area=numbers,
    iscrowd=st.sampled_from([0, 1]),
    segmentation=st.one_of(
        st.lists(st.lists(numbers, max_size=8), max_size=2),
        fields(
            size=st.lists(st.integers(0, 40), min_size=2, max_size=2), counts=st.text(max_size=8)
        ),
    ),
    keypoints=st.lists(numbers, max_size=6),
)
coco_categories = fields(
    id=st.integers(1, 3),
    name=st.sampled_from(["cat", "dog", ""]),
    keypoints=st.lists(names, max_size=2),
)
coco_documents = st.fixed_dictionaries(
    {},
    optional={
        "images": either(st.lists(either(coco_images), max_size=4)),
        "annotations": either(st.lists(either(coco_annotations), max_size=5)),
        "categories": either(st.lists(either(coco_categories), max_size=3)),
        "info": json_values,
    },
)


def coco_file(document: dict) -> tuple[bytes, int]:
    annotations = document.get("annotations")
    if isinstance(annotations, list):
        objects = len(annotations)
    else:  # An object in its place: its entries are counted as what was skipped.
        objects = len(annotations) if isinstance(annotations, dict) else 0
    return json.dumps(document).encode("utf-8", "surrogatepass"), objects


def join_coco(path: str) -> list:
    """The COCO reader's two steps, streaming and joining, as the pipeline runs them; an
    image's annotation lists reach the join last first, as a shuffle may hand them over."""
    streamed = list(_StreamCocoFile(path, OPTIONS).process(path))
    keyed: dict[str, dict] = {IMAGES: defaultdict(list), OBJECTS: defaultdict(list)}
    categories, records = {}, []
    for item in streamed:
        assert isinstance(item, beam.pvalue.TaggedOutput), item
        if item.tag in keyed:
            key, value = item.value
            keyed[item.tag][key].append(value)
        elif item.tag == CATEGORIES:
            categories[item.value[0]] = item.value[1]
        else:
            records.append(item.value)
    for key in {*keyed[IMAGES], *keyed[OBJECTS]}:
        grouped = {"images": keyed[IMAGES][key], "annotations": keyed[OBJECTS][key][::-1]}
        for item in _JoinImage(OPTIONS).process((key, grouped), categories):
            records.append(item.value if isinstance(item, beam.pvalue.TaggedOutput) else item)
    return records


def read_coco(data: bytes) -> tuple[list, list]:
    """A COCO file's records with its annotations gathered whole, and with each leaving the
    streaming step on its own (a budget of 0)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "instances.json")
        with open(path, "wb") as handle:
            handle.write(data)
        gathered = join_coco(path)
        with mock.patch.object(_StreamCocoFile, "GATHER_BYTES", 0):
            return gathered, join_coco(path)


@FUZZ
@given(fuzz_file(coco_documents, coco_file))
def test_coco(data):
    gathered, flushed = read_coco(data[0])
    objects, records = check(gathered)
    assert_accounted(data, objects, records)
    assert sorted(map(repr, flushed)) == sorted(map(repr, records))


# Labelbox: NDJSON rows and the older JSON list, any value in any field.
labelbox_objects = fields(
    name=st.sampled_from(["cat", "dog", ""]),
    bounding_box=fields(top=numbers, left=numbers, height=numbers, width=numbers),
    polygon=st.lists(fields(x=numbers, y=numbers), max_size=4),
)
labelbox_rows = st.fixed_dictionaries(
    {
        "projects": st.dictionaries(
            st.text(max_size=3),
            st.fixed_dictionaries(
                {
                    "labels": st.lists(
                        st.fixed_dictionaries(
                            {
                                "annotations": st.fixed_dictionaries(
                                    {"objects": st.lists(either(labelbox_objects), max_size=3)}
                                )
                            }
                        ),
                        max_size=2,
                    )
                }
            ),
            max_size=2,
        )
    },
    optional={
        "data_row": either(fields(external_id=names)),
        "media_attributes": either(fields(width=numbers, height=numbers)),
    },
)
old_labelbox_rows = st.fixed_dictionaries(
    {"Label": st.fixed_dictionaries({"objects": st.lists(either(labelbox_objects), max_size=3)})},
    optional={"External ID": either(names)},
)


def row_objects(row: dict) -> int:
    if "Label" in row:
        return len(row["Label"]["objects"])
    labels = (label for project in row["projects"].values() for label in project["labels"])
    return sum(len(label["annotations"]["objects"]) for label in labels)


def labelbox_file(rows: list[dict]) -> tuple[bytes, int]:
    objects = sum(row_objects(row) for row in rows)
    if rows and "Label" in rows[0]:
        return json.dumps(rows).encode("utf-8", "surrogatepass"), objects
    text = "".join(json.dumps(row) + "\n" for row in rows)
    return text.encode("utf-8", "surrogatepass"), objects


@FUZZ
@given(
    fuzz_file(
        st.lists(labelbox_rows, max_size=3) | st.lists(old_labelbox_rows, min_size=1, max_size=3),
        labelbox_file,
    )
)
def test_labelbox(data):
    objects, records = check(parse_labelbox(data[0], f"{ROOT}/e.ndjson", OPTIONS))
    assert_accounted(data, objects, records)


# CreateML: a list of entries, any value in any field.
createml_entries = st.fixed_dictionaries(
    {
        "annotations": st.lists(
            either(
                fields(
                    label=st.sampled_from(["cat", ""]),
                    coordinates=fields(x=numbers, y=numbers, width=numbers, height=numbers),
                )
            ),
            max_size=3,
        )
    },
    optional={"image": either(names)},
)


def createml_file(entries: list[dict]) -> tuple[bytes, int]:
    objects = sum(len(entry["annotations"]) for entry in entries)
    return json.dumps(entries).encode("utf-8", "surrogatepass"), objects


@FUZZ
@given(fuzz_file(st.lists(createml_entries, max_size=3), createml_file))
def test_createml(data):
    objects, records = check(parse_createml(data[0], f"{ROOT}/c.json", OPTIONS))
    assert_accounted(data, objects, records)


# LabelMe: shapes of every type with any points, any image fields.
labelme_shapes = fields(
    label=st.sampled_from(["cat", "dog", ""]),
    shape_type=st.sampled_from(["rectangle", "polygon", "circle", "mask", "point", "line"]),
    points=st.lists(st.lists(numbers, min_size=2, max_size=2), max_size=4),
    mask=st.sampled_from(["", "iVBORw0KGgo=", "not base64!"]),
)
labelme_documents = st.fixed_dictionaries(
    {"shapes": st.lists(either(labelme_shapes), max_size=4)},
    optional={
        "imagePath": either(names | st.just("a.json")),
        "imageData": either(st.sampled_from(["", "aGVsbG8="])),
        "imageWidth": either(st.integers(1, 50)),
        "imageHeight": either(st.integers(1, 50)),
    },
)


def labelme_file(document: dict) -> tuple[bytes, int]:
    return json.dumps(document).encode("utf-8", "surrogatepass"), len(document["shapes"])


@FUZZ
@given(fuzz_file(labelme_documents, labelme_file))
def test_labelme(data):
    objects, records = check(parse_labelme(data[0], f"{ROOT}/a.json", OPTIONS))
    assert_accounted(data, objects, records)


# YOLO labels and keras-yolo3 lines: any text, and lines shaped like theirs with any field.
label_fields = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", "0.5", "inf", "nan", "9" * 5000, "1e999", "0x1", ""]),
    st.text(max_size=6),
)
yolo_lines = st.one_of(
    st.lists(label_fields, min_size=0, max_size=7).map(" ".join), st.text(max_size=30)
)


def yolo_text(lines: list[str]) -> tuple[bytes, int]:
    text = "\n".join(lines)
    return text.encode("utf-8", "surrogatepass"), sum(
        1 for line in text.splitlines() if line.strip()
    )


@FUZZ
@given(fuzz_file(st.lists(yolo_lines, max_size=5), yolo_text))
def test_yolo_labels(data):
    text = data[0].decode("utf-8-sig", errors="replace")
    objects, records = check(parse_yolo_labels(text, f"{ROOT}/a.txt", "a.jpg", ("cat",), None))
    assert_accounted(data, objects, records)


keras_boxes = st.lists(label_fields, min_size=1, max_size=6).map(",".join)
keras_lines = st.builds(
    lambda name, boxes: " ".join([name, *boxes]), names, st.lists(keras_boxes, max_size=3)
)


def keras_text(lines: list[str]) -> tuple[bytes, int]:
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    lines = [raw.decode("utf-8") for raw in io.BytesIO(data)]
    return data, sum(max(len(line.split()) - 1, 0) for line in lines)


@FUZZ
@given(fuzz_file(st.lists(keras_lines | st.text(max_size=20), max_size=4), keras_text))
def test_keras(data):
    objects, records = check(parse_keras_file(io.BytesIO(data[0]), f"{ROOT}/t.txt", OPTIONS))
    assert_accounted(data, objects, records)


# List files: VOC's ImageSets and YOLO's image lists, any bytes.
@FUZZ
@given(hostile_bytes | st.lists(names, max_size=4).map(lambda lines: "\n".join(lines).encode()))
def test_list_files(data):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "train.txt")
        with open(path, "wb") as handle:
            handle.write(data)
        options = ReaderOptions(images=folder, annotations_root=folder, source_splits=True)
        outputs = [
            *ListedStems().process(("train", path)),
            *_ListImages(options).process(("train", path)),
        ]
    for item in outputs:
        if isinstance(item, beam.pvalue.TaggedOutput):
            assert item.tag == ERRORS and isinstance(item.value, ErrorRecord)
        else:
            assert isinstance(item, tuple) and all(isinstance(v, str) for v in item), item


# YAML: data.yaml, class maps and configs give their value or one usage error.
yaml_texts = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "a: &a [1, 2]\nb: *a\n",
            "[" * 5000,
            "names: {99999999999999999999999: x}\ntrain: .\n",
            "names: ['', x]\ntrain: .\n",
            "train: .\nnames: [[a], {b: c}]\n",
            "when: 2001-13-45\n",
            "!!python/object:os.system x\n",
            "pipeline_options: {1: 2}\n",
            "num_shards: [1]\n",
            "annotations: 5\n",
        ]
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "path": either(st.sampled_from([".", "", "missing", "/content/x"])),
            "train": either(st.sampled_from([".", "images", "../images", "list.txt", "a.jpg"])),
            "val": either(st.sampled_from([".", "images", "missing"])),
            "names": json_values,
            "nc": json_values,
            "format": json_values,
            "splits": json_values,
        },
    ).map(lambda config: json.dumps(config)),
)


@FUZZ
@given(yaml_texts)
def test_yaml_files_give_their_value_or_one_usage_error(text):
    with tempfile.TemporaryDirectory() as folder:
        os.makedirs(os.path.join(folder, "images"))
        path = os.path.join(folder, "data.yaml")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as handle:
            handle.write(text)
        with _any_of(UnusableSource, OSError):
            load_dataset(path)
        with _any_of(ValueError, OSError):
            load_class_map(path)
        with _any_of(UsageError):
            _load_config(path)


class _any_of:
    """A context that lets through success or one of the exception types given."""

    def __init__(self, *allowed: type[BaseException]):
        self._allowed = allowed

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        return kind is None or issubclass(kind, self._allowed)


# A few hostile files of every format through ReadAnnotations, as the pipeline runs them.
HOSTILE_FILES = {
    "voc": {
        "a.xml": b"<annotation><filename>a.jpg</filename><size><width>inf</width></size>"
        b"<object><name>x</name><bndbox><xmin>1e999</xmin></bndbox></object></annotation>",
        "b.xml": DEEP,
    },
    "csv": {
        "l.csv": b"filename,width,height,class,xmin,ymin,xmax,ymax\n"
        b"a\xff.jpg,1,1,c,1,1,2,2\na.jpg,inf,1,c,1e999,1,2,2\n"
    },
    "coco": {
        "c.json": b'{"images": {"1": 1}, "annotations": [{"image_id": 18446744073709551616}, '
        b'[1]], "categories": [{"id": [1]}]}',
        "d.json": DEEP,
    },
    "labelbox": {
        "e.ndjson": b'{"data_row": [1]}\n{"data_row": {"external_id": "a\xff.jpg"}}\n['
        + b"9" * 5000
        + b"]\n"
    },
    "createml": {
        "c.json": b'[{"image": "a.jpg", "annotations": [{"label": "x", '
        b'"coordinates": {"x": 1e999}}]}, 7]',
        "d.json": DEEP,
    },
    "labelme": {
        "a.json": b'{"imagePath": "a.jpg", "shapes": [{"label": "x", "points": [['
        + b"9" * 400
        + b", 1], [2, 2]]}, 5]}"
    },
    "yolo-keras": {
        "_annotations.txt": b"a.jpg 1,1,inf,2,0 " + b"9" * 5000 + b",1,2,2,0\n\xff.jpg 1,1,2,2,0\n"
    },
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_files_through_read_annotations(tmp_path, name):
    for file, data in HOSTILE_FILES[name].items():
        (tmp_path / file).write_bytes(data)
    options = ReaderOptions(
        images=str(tmp_path),
        images_beside_annotations=True,
        annotations_root=str(tmp_path),
        class_names=("cat",),
    )
    fmt = formats()[name]

    def all_of(kind, at_least: int):
        def matcher(records):
            assert len(records) >= at_least, records
            assert all(isinstance(record, kind) for record in records), records

        return matcher

    with local_pipeline() as pipeline:
        result = pipeline | ReadAnnotations(fmt, str(tmp_path / fmt.folder_glob), options)
        assert_that(result[ERRORS], all_of(ErrorRecord, 2), label="errors")
        assert_that(result["annotations"], all_of(ImageAnnotation, 0), label="annotations")
