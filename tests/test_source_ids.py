"""Numeric `image/source_id`s: COCO's image ids, else a stable number from the image key,
unique within each split, and exported back as COCO image ids."""

import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from conftest import local_pipeline, read_output, run_create
from format_writers import copy_images, sample_boxes, write_coco
from pycocotools.coco import COCO
from test_export import example, jpeg_bytes, run_export, write_records

from transforms.readers.base import ANNOTATIONS
from transforms.records import ImageAnnotation
from transforms.source_ids import (
    COUNTS,
    AssignSourceIds,
    id_from_name,
    source_id_of,
)


def test_numbers_from_names_never_change_and_fit_53_bits():
    # Pinned: a changed formula would renumber every image of every rebuilt dataset.
    assert id_from_name("raccoon-106.jpg") == 6308970178882152
    assert id_from_name("raccoon-106.jpg", salt=1) == 3353747873714941
    numbers = {id_from_name(f"images/{n}.jpg") for n in range(10_000)}
    assert len(numbers) == 10_000
    assert all(0 <= number < 2**53 for number in numbers)
    assert id_from_name("bad\udcff.jpg") < 2**53  # A name that is not valid UTF-8.


@pytest.mark.parametrize(
    "source_id, expected",
    [
        (42, 42),
        (0, 0),
        (2**63 - 1, 2**63 - 1),
        (None, id_from_name("a.jpg")),
        (-1, id_from_name("a.jpg")),  # TF-Vision reads -1 as "no id".
        (2**63, id_from_name("a.jpg")),  # Beyond int64.
    ],
)
def test_source_ids_are_used_where_tensorflow_reads_them(source_id, expected):
    assert source_id_of(ImageAnnotation("a.jpg", ("s",), source_id=source_id)) == expected


def test_the_first_image_by_name_keeps_a_shared_id_within_its_split():
    shared_hash = id_from_name("z.jpg")
    images = [
        ImageAnnotation("b.jpg", ("f2",), source_id=7),
        ImageAnnotation("a.jpg", ("f1",), source_id=7),  # Two files numbering alike.
        ImageAnnotation("c.jpg", ("f1",), source_id=8),
        ImageAnnotation("y.jpg", ("f1",), source_id=shared_hash),  # Another's name hash.
        ImageAnnotation("z.jpg", ("f1",)),
        ImageAnnotation("t.jpg", ("f1",), split="train", source_id=9),  # Source splits:
        ImageAnnotation("v.jpg", ("f2",), split="val", source_id=9),  # each keeps its id.
    ]
    expected = [
        (None, "a.jpg", 7),
        (None, "b.jpg", id_from_name("b.jpg")),
        (None, "c.jpg", 8),
        (None, "y.jpg", shared_hash),
        (None, "z.jpg", id_from_name("z.jpg", salt=1)),  # Its own number was taken.
        ("train", "t.jpg", 9),
        ("val", "v.jpg", 9),
    ]
    reassigned = [
        "b.jpg (shared 7 with a.jpg)",
        f"z.jpg (shared {shared_hash} with y.jpg)",
    ]
    counts = [{"from_source": 1}] * 6 + [{"from_name": 1}]
    counts += [{"reassigned": {"count": 1, "first": [sample]}} for sample in reassigned]
    with local_pipeline() as pipeline:
        numbered = pipeline | beam.Create(images) | AssignSourceIds()
        ids = numbered[ANNOTATIONS] | beam.Map(lambda i: (i.split, i.image, i.source_id))
        assert_that(ids, equal_to(expected), label="ids")
        assert_that(
            numbered[COUNTS] | beam.Map(lambda c: c["source_ids"]), equal_to(counts), label="counts"
        )


def _coco_files(root, first_ids: dict[str, int]) -> None:
    """One COCO file per split, each numbering its images from its own first id."""
    images = sample_boxes()
    names = sorted(images)
    copy_images(str(root / "images"), names)
    for index, (split, first) in enumerate(first_ids.items()):
        part = {name: images[name] for name in names[index :: len(first_ids)]}
        write_coco(str(root / f"instances_{split}.json"), part, first_id=first)


def _ids(output) -> dict[str, dict[str, int]]:
    return {
        split: {e["image/filename"].decode(): int(e["image/source_id"]) for e in examples}
        for split, examples in output["splits"].items()
    }


def test_coco_files_numbered_alike_keep_their_ids_per_source_split(tmp_path):
    _coco_files(tmp_path, {"train": 1, "valid": 1})  # As Roboflow numbers each split from 0/1.
    assert run_create("--format", "coco", "--annotations", tmp_path, "--images",
                      tmp_path / "images", "--output", tmp_path / "out",
                      "--splits", "source") == 0  # fmt: skip
    output = read_output(tmp_path / "out")
    for split, ids in _ids(output).items():
        assert sorted(ids.values()) == list(range(1, len(ids) + 1)), split
    assert output["manifest"]["images"]["source_ids"]["reassigned"]["count"] == 0


def test_coco_files_numbered_alike_get_unique_ids_in_hash_splits(tmp_path):
    _coco_files(tmp_path, {"a": 1, "b": 1})
    assert run_create("--format", "coco", "--annotations", tmp_path, "--images",
                      tmp_path / "images", "--output", tmp_path / "out",
                      "--splits", "train=0.5,val=0.5", "--num-shards", "1") == 0  # fmt: skip
    output = read_output(tmp_path / "out")
    by_name = {name: n for ids in _ids(output).values() for name, n in ids.items()}
    assert len(by_name) == len(sample_boxes())
    assert len(set(by_name.values())) == len(by_name)  # Unique across the whole dataset.
    documents = {
        path: json.loads(path.read_text()) for path in sorted(tmp_path.glob("instances_*.json"))
    }
    first_file = documents[tmp_path / "instances_a.json"]["images"]
    assert all(by_name[image["file_name"]] == image["id"] for image in first_file)
    second = documents[tmp_path / "instances_b.json"]["images"]
    assert all(by_name[image["file_name"]] == id_from_name(image["file_name"]) for image in second)
    reassigned = output["manifest"]["images"]["source_ids"]["reassigned"]
    assert reassigned["count"] == len(second)
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"**{len(second)} images had the number of another image of their split**" in card
    assert reassigned["first"][0] in card


def _images_and_boxes(coco: COCO) -> dict[str, tuple]:
    return {
        image["file_name"]: (
            image["id"],
            sorted(a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))),
        )
        for image in coco.loadImgs(coco.getImgIds())
    }


def test_export_gives_coco_its_image_ids_back(tmp_path):
    _coco_files(tmp_path, {"train": 500})
    source = tmp_path / "instances_train.json"
    assert run_create("--format", "coco", "--annotations", source, "--images",
                      tmp_path / "images", "--output", tmp_path / "out") == 0  # fmt: skip
    assert run_export("--input", tmp_path / "out", "--format", "coco",
                      "--output", tmp_path / "e") == 0  # fmt: skip
    exported = COCO(str(tmp_path / "e" / "annotations" / "instances_train.json"))
    assert _images_and_boxes(exported) == _images_and_boxes(COCO(str(source)))


@pytest.mark.parametrize(
    "source_ids",
    [
        [b"a.jpg", b"b.jpg"],  # Names, as odrecords wrote them before.
        [b"7", b"7"],  # Numbers, but shared.
        [b"7", b"07"],  # Not written as str() writes an int.
        [b"7", b""],
    ],
)
def test_export_numbers_images_itself_when_source_ids_are_not_unique_numbers(tmp_path, source_ids):
    records = [
        example(image__encoded=jpeg_bytes(), image__format=b"jpeg", image__filename=name,
                image__source_id=source_id, image__height=30, image__width=40)
        for name, source_id in zip([b"a.jpg", b"b.jpg"], source_ids, strict=True)
    ]  # fmt: skip
    write_records(tmp_path / "r.tfrecord", records)
    assert run_export("--input", f"s={tmp_path}/r.tfrecord", "--format", "coco",
                      "--output", tmp_path / "e") == 0  # fmt: skip
    coco = COCO(str(tmp_path / "e" / "annotations" / "instances_s.json"))
    assert {i["file_name"]: i["id"] for i in coco.loadImgs(coco.getImgIds())} == {
        "a.jpg": 1,
        "b.jpg": 2,
    }
