"""`odrecords export`: TFRecords back to COCO (checked with pycocotools), VOC, CSV and YOLO,
from odrecords output and from records other tools wrote."""

import csv
import gzip
import hashlib
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import RACCOON, SAMPLE, example_boxes, read_output, run_create
from format_writers import sample_boxes
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipelines import export
from transforms.tfrecord import frame


def run_export(*args) -> int:
    return export.main([str(arg) for arg in args])


def feature(values):
    if not isinstance(values, list):
        values = [values]
    if values and isinstance(values[0], bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if values and isinstance(values[0], float):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def example(**features) -> bytes:
    """A serialized tf.train.Example; keys use '__' for '/' (image__object__bbox__xmin)."""
    mapped = {key.replace("__", "/"): feature(value) for key, value in features.items()}
    features = tf.train.Features(feature=mapped)
    return tf.train.Example(features=features).SerializeToString(deterministic=True)


def jpeg_bytes(width=40, height=30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def sample_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    code = run_create(
        "--format", "voc", "--annotations", f"{SAMPLE}/annotations", "--images",
        f"{SAMPLE}/images", "--output", out, "--splits", "train=0.75,val=0.25", "--num-shards", "2",
    )  # fmt: skip
    assert code == 0
    return out


def test_coco_export_of_odrecords_output_round_trips_and_passes_cocoeval(sample_records, tmp_path):
    assert (
        run_export("--input", sample_records, "--format", "coco", "--output", tmp_path / "c") == 0
    )
    expected = sample_boxes()
    seen = {}
    for split in ("train", "val"):
        path = tmp_path / "c" / "annotations" / f"instances_{split}.json"
        coco = COCO(str(path))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        assert names == {1: "circle", 2: "square", 3: "triangle"}
        for image in coco.loadImgs(coco.getImgIds()):
            boxes = sorted(
                (names[a["category_id"]], a["bbox"][0], a["bbox"][1],
                 a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3])
                for a in coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            )  # fmt: skip
            # Whole pixels come back as the integers they were, not as float32 noise.
            assert boxes == sorted(expected[image["file_name"]]["boxes"])
            for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
                assert all(type(v) is int for v in [*annotation["bbox"], annotation["area"]])
            with open(os.path.join(SAMPLE, "images", image["file_name"]), "rb") as handle:
                original = handle.read()
            written = (tmp_path / "c" / "images" / image["file_name"]).read_bytes()
            assert written == original  # The original bytes, not re-encoded.
            seen[image["file_name"]] = split
        detections = [
            {**a, "score": 1.0} for a in coco.loadAnns(coco.getAnnIds()) if a["category_id"]
        ]
        if detections:
            evaluation = COCOeval(coco, coco.loadRes(detections), "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            assert evaluation.stats[0] == pytest.approx(1.0)
    assert sorted(seen) == sorted(expected)


def test_export_is_byte_identical_on_rerun(sample_records, tmp_path):
    for name in ("a", "b"):
        assert (
            run_export("--input", sample_records, "--format", "coco", "--output", tmp_path / name)
            == 0
        )
    for split in ("train", "val"):
        relative = f"annotations/instances_{split}.json"
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()


def corner_values(xml: str, tag: str) -> list[str]:
    return sorted(part.split("<")[0] for part in xml.split(f"<{tag}>")[1:])


def test_voc_export_gives_back_the_integer_corners(sample_records, tmp_path):
    assert run_export("--input", sample_records, "--format", "voc", "--output", tmp_path / "v") == 0
    for name in sample_boxes():
        stem = os.path.splitext(name)[0]
        exported = (tmp_path / "v" / "annotations" / f"{stem}.xml").read_text()
        with open(f"{SAMPLE}/annotations/{stem}.xml") as handle:
            original = handle.read()
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            assert corner_values(exported, tag) == corner_values(original, tag), (name, tag)


# `odrecords create` flags that read an export of each format back.
READ_BACK = {
    "voc": ["--format", "voc", "--annotations", "{out}/annotations", "--images", "{out}/images"],
    "csv": ["--format", "csv", "--annotations", "{out}/*_labels.csv", "--images", "{out}/images"],
    "yolo": ["--format", "yolo", "--annotations", "{out}"],
    "coco": ["--format", "coco", "--annotations", "{out}/annotations", "--images", "{out}/images"],
}


@pytest.mark.parametrize("fmt, reader_args", READ_BACK.items())
def test_create_export_create_gives_the_same_examples(sample_records, tmp_path, fmt, reader_args):
    out = tmp_path / "exported"
    assert run_export("--input", sample_records, "--format", fmt, "--output", out) == 0
    args = [a.format(out=out) for a in reader_args]
    assert run_create(*args, "--output", tmp_path / "again") == 0
    first, again = read_output(sample_records), read_output(tmp_path / "again")

    def by_image(output):
        result = {}
        for examples in output["splits"].values():
            for e in examples:
                name = os.path.basename(e["image/filename"].decode())
                boxes = sorted(
                    zip(
                        [t.decode() for t in e["image/object/class/text"]],
                        *(np.round(e[f"image/object/bbox/{k}"], 5).tolist()
                          for k in ("xmin", "ymin", "xmax", "ymax")),
                        strict=True,
                    )
                )  # fmt: skip
                result[name] = (e["image/encoded"], boxes)
        return result

    assert by_image(again) == by_image(first)


def test_dat_trans_tf1_record_gives_40_images_and_44_boxes_equal_to_its_csv(tmp_path):
    record = os.path.join(RACCOON, "data", "test.record")
    if not os.path.exists(record):
        pytest.skip("../shared/data/raccoon is not present")
    assert run_export("--input", record, "--format", "csv", "--output", tmp_path / "csv") == 0
    with open(os.path.join(RACCOON, "data", "test_labels.csv"), newline="") as handle:
        want = sorted(tuple(row.values()) for row in csv.DictReader(handle))
    with open(tmp_path / "csv" / "test_labels.csv", newline="") as handle:
        got = sorted(tuple(row.values()) for row in csv.DictReader(handle))
    assert len(got) == 44 and len({row[0] for row in got}) == 40
    assert got == want
    assert run_export("--input", record, "--format", "coco", "--output", tmp_path / "coco") == 0
    coco = COCO(str(tmp_path / "coco" / "annotations" / "instances_test.json"))
    assert len(coco.getImgIds()) == 40 and len(coco.getAnnIds()) == 44
    assert len(os.listdir(tmp_path / "coco" / "images")) == 40


def write_records(path, records, compress=False):
    data = b"".join(frame(r) for r in records)
    path.write_bytes(gzip.compress(data) if compress else data)


def test_third_party_variants(tmp_path):
    image = jpeg_bytes()
    box = {"image__object__bbox__xmin": [0.25], "image__object__bbox__ymin": [0.1],
           "image__object__bbox__xmax": [0.75], "image__object__bbox__ymax": [0.9]}  # fmt: skip
    records = [
        # TF Models' COCO script: no class/label, names from the label map.
        example(image__encoded=image, image__format=b"jpeg", image__filename=b"a.jpg",
                image__source_id=b"1", image__height=30, image__width=40,
                image__object__class__text=[b"/m/dog"], **box),
        # No source_id, an empty class text with label 2 (named by the label map).
        example(image__encoded=image, image__format=b"jpg", image__filename=b"b.jpg",
                image__height=30, image__width=40, image__object__class__text=[b""],
                image__object__class__label=[2], **box),
        # Label 0 and no text: rejected object, image kept.
        example(image__encoded=image, image__format=b"jpeg", image__filename=b"c.jpg",
                image__source_id=b"", image__height=30, image__width=40,
                image__object__class__label=[0], **box),
        # A negative image, an unsafe file name and no size features.
        example(image__encoded=image, image__format=b"jpeg", image__filename=b"../../evil.jpg",
                image__source_id=b"neg"),
        # Mismatched list lengths: the whole record is an error.
        example(image__encoded=image, image__format=b"jpeg", image__filename=b"d.jpg",
                image__height=30, image__width=40, image__object__class__label=[1, 2], **box),
        # A coordinate past 1.1: that object is an error.
        example(image__encoded=image, image__format=b"jpeg", image__filename=b"e.jpg",
                image__height=30, image__width=40, image__object__class__label=[1],
                **{**box, "image__object__bbox__xmax": [1.5]}),
        # No image bytes: annotations only.
        example(image__filename=b"f.jpg", image__height=30, image__width=40,
                image__object__class__label=[1], **box),
        # Same file name as a.jpg: both get unique names.
        example(image__encoded=jpeg_bytes(20, 20), image__format=b"jpeg", image__filename=b"a.jpg",
                image__source_id=b"other", image__height=20, image__width=20),
    ]  # fmt: skip
    write_records(tmp_path / "mixed.bin", records, compress=True)  # GZIP found from the bytes.
    (tmp_path / "labels.pbtxt").write_text(
        "item { name: '/m/dog' id: 1 display_name: 'dog' }\n"
        "item { name: '/m/cat' id: 2 display_name: 'cat' }\n"
    )
    out = tmp_path / "out"
    code = run_export("--input", f"things={tmp_path}/mixed.bin", "--format", "coco",
                      "--label-map", tmp_path / "labels.pbtxt", "--output", out)  # fmt: skip
    assert code == 0
    coco = COCO(str(out / "annotations" / "instances_things.json"))
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == {1: "dog", 2: "cat"}
    images = {i["file_name"]: i for i in coco.loadImgs(coco.getImgIds())}
    names = sorted(images)
    assert len(names) == 7
    assert "b.jpg" in names and "c.jpg" in names and "e.jpg" in names and "f.jpg" in names
    shared = [name for name in names if name.startswith("a~")]  # The two a.jpg, made unique.
    assert len(shared) == 2
    for name in shared:
        digest = hashlib.sha256((out / "images" / name).read_bytes()).hexdigest()
        assert name == f"a~{digest[:16]}.jpg"
    assert "neg.jpg" in names  # The unsafe file name gave way to the source_id.
    assert not (tmp_path / "evil.jpg").exists()
    labels = {
        name: sorted(a["category_id"] for a in coco.loadAnns(coco.getAnnIds(imgIds=i["id"])))
        for name, i in images.items()
    }
    assert labels["b.jpg"] == [2] and labels["c.jpg"] == [] and labels["neg.jpg"] == []
    assert labels["e.jpg"] == [] and labels["f.jpg"] == [1]
    dog = [labels[n] for n in shared]
    assert sorted(dog) == [[], [1]]
    assert not (out / "images" / "f.jpg").exists()  # No bytes, no image file.
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 3
    assert any("background" in e["reason"] for e in errors)
    assert any("differ in length" in e["reason"] and e["stage"] == "record" for e in errors)
    assert any("outside [0, 1.1]" in e["reason"] for e in errors)
    summary = json.loads((out / "export.json").read_text())
    assert summary["records_without_image_bytes"] == 1


def test_export_without_a_label_map_takes_ids_from_the_records(tmp_path):
    image = jpeg_bytes()
    box = {"image__object__bbox__xmin": [0.1], "image__object__bbox__ymin": [0.1],
           "image__object__bbox__xmax": [0.5], "image__object__bbox__ymax": [0.5]}  # fmt: skip
    records = [
        example(image__encoded=image, image__format=b"jpeg", image__filename=f"{n}.jpg".encode(),
                image__height=30, image__width=40, image__object__class__text=[text],
                image__object__class__label=[label], **box)
        for n, (text, label) in enumerate([(b"cat", 7), (b"dog", 3), (b"cat", 7)])
    ]  # fmt: skip
    write_records(tmp_path / "r.tfrecord", records)
    assert (
        run_export(
            "--input", tmp_path / "r.tfrecord", "--format", "yolo", "--output", tmp_path / "y"
        )
        == 0
    )
    import yaml

    data = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text())
    assert data["names"] == ["dog", "cat"]  # Id order: dog 3, cat 7.
    assert (tmp_path / "y" / "labels" / "0.txt").read_text().split()[0] == "1"


def test_objects_of_classes_the_label_map_lacks_are_errors(tmp_path):
    box = {"image__object__bbox__xmin": [0.1, 0.2, 0.3], "image__object__bbox__ymin": [0.1] * 3,
           "image__object__bbox__xmax": [0.5, 0.6, 0.7],
           "image__object__bbox__ymax": [0.5] * 3}  # fmt: skip
    write_records(tmp_path / "r.tfrecord", [
        example(image__encoded=jpeg_bytes(), image__format=b"jpeg", image__filename=b"a.jpg",
                image__height=30, image__width=40,
                image__object__class__text=[b"dog", b"zebra", b"zebra"], **box),
        example(image__encoded=jpeg_bytes(), image__format=b"jpeg", image__filename=b"b.jpg",
                image__height=30, image__width=40, image__object__class__label=[1, 9, 0], **box),
    ])  # fmt: skip
    (tmp_path / "labels.pbtxt").write_text("item { name: 'dog' id: 1 }")
    out = tmp_path / "out"
    code = run_export("--input", tmp_path / "r.tfrecord", "--format", "coco",
                      "--label-map", tmp_path / "labels.pbtxt", "--output", out)  # fmt: skip
    assert code == 0
    coco = COCO(str(out / "annotations" / "instances_r.json"))
    assert [a["category_id"] for a in coco.loadAnns(coco.getAnnIds())] == [1, 1]
    reasons = sorted(
        json.loads(line)["reason"] for line in (out / "errors.jsonl").read_text().splitlines()
    )
    assert reasons == [
        "class text 'zebra' is not in the label map",
        "class text 'zebra' is not in the label map",
        "label 9 is not in the label map",
        "object has no class text and label 0, which names no class "
        "(0 is the Object Detection API's background)",
    ]


def test_usage_errors_exit_2(tmp_path, capsys):
    assert (
        run_export("--input", tmp_path / "none*", "--format", "coco", "--output", tmp_path / "o")
        == 2
    )
    assert "no TFRecord files match" in capsys.readouterr().err
    assert run_export("--input", tmp_path, "--format", "pascal", "--output", tmp_path / "o") == 2
    assert "unknown format 'pascal'" in capsys.readouterr().err


def test_masks_and_keypoints_survive_create_and_export(tmp_path):
    import pycocotools.mask as coco_mask

    Image.new("RGB", (40, 30), (90, 120, 150)).save(tmp_path / "a.jpg")
    crowd = np.zeros((30, 40), dtype=np.uint8)
    crowd[5:10, 20:30] = 1
    rle = coco_mask.encode(np.asfortranarray(crowd))
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8], "iscrowd": 0,
             "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]], "keypoints": [4, 5, 2, 6, 7, 1]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 5, 10, 5], "iscrowd": 1,
             "segmentation": {"size": [30, 40], "counts": rle["counts"].decode()}},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": ["nose", "eye"]},
                       {"id": 2, "name": "crowd"}],
    }  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(document))
    assert run_create("--format", "coco", "--annotations", tmp_path / "a.json", "--output",
                      tmp_path / "r", "--include-masks", "--include-keypoints") == 0  # fmt: skip
    assert (
        run_export("--input", tmp_path / "r", "--format", "coco", "--output", tmp_path / "e") == 0
    )
    coco = COCO(str(tmp_path / "e" / "annotations" / "instances_train.json"))
    person, crowd_annotation = coco.loadAnns(coco.getAnnIds())
    assert coco.loadCats(1)[0]["keypoints"] == ["nose", "eye"]
    assert person["keypoints"] == [4, 5, 2, 6, 7, 1] and person["bbox"] == [2, 3, 10, 8]
    assert person["num_keypoints"] == 2
    assert crowd_annotation["iscrowd"] == 1
    assert np.array_equal(coco.annToMask(crowd_annotation), crowd)
    rendered = coco.annToMask(person)
    assert rendered[3:12, 2:13].all() and rendered.sum() == 9 * 11


# Names as other tools write them: folders (Ultralytics' `images/`, at any depth), two images
# with one stem, and formats create converts to PNG (`e.webp` then collides with `e.png`).
AWKWARD_NAMES = [
    "a.jpg", "sub/a.jpg", "images/a.jpg", "x/images/y/a.jpg",
    "s.jpg", "s.png", "e.webp", "e.png", "f.bmp",
]  # fmt: skip


@pytest.fixture(scope="module")
def awkward_records(tmp_path_factory):
    """Records of AWKWARD_NAMES, each image different, with one or two whole-pixel boxes."""
    source = tmp_path_factory.mktemp("awkward")
    document = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for number, name in enumerate(AWKWARD_NAMES, start=1):
        width, height = 40 + number, 30 + number
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (width, height), (20 * number, 255 - 20 * number, 90))
        image.save(path, **({"lossless": True} if name.endswith(".webp") else {}))
        document["images"].append(
            {"id": number, "file_name": name, "width": width, "height": height}
        )
        for index in range(1 + number % 2):
            document["annotations"].append(
                {"id": 10 * number + index, "image_id": number, "category_id": 1,
                 "bbox": [number + index, 2 * index + 1, 10 + index, 7 + number]}
            )  # fmt: skip
    (source / "a.json").write_text(json.dumps(document))
    out = tmp_path_factory.mktemp("awkward-records")
    code = run_create("--format", "coco", "--annotations", source / "a.json", "--images", source,
                      "--output", out, "--splits", "train=0.5,val=0.5")  # fmt: skip
    assert code == 0
    return out


def by_bytes(output) -> dict[str, tuple]:
    """{sha256 of the image bytes: (split, filename, class texts, corners)} of an output."""
    result = {}
    for split, examples in output["splits"].items():
        for e in examples:
            boxes = example_boxes(e)
            digest = hashlib.sha256(e["image/encoded"]).hexdigest()
            assert digest not in result
            result[digest] = (split, e["image/filename"].decode(), [b[0] for b in boxes],
                              np.array([b[1:] for b in boxes]).reshape(-1, 4))  # fmt: skip
    return result


def image_files(folder) -> dict[str, str]:
    """{name under folder: the image format of its bytes} of every file under it but YOLO's
    label files (which Ultralytics' rule puts under images/ for names with an images/ folder)."""
    return {
        path.relative_to(folder).as_posix(): Image.open(path).format
        for path in folder.rglob("*")
        if path.is_file() and path.suffix != ".txt"
    }


@pytest.mark.parametrize("fmt", READ_BACK)
def test_awkward_names_export_and_read_back_whole(awkward_records, tmp_path, fmt):
    out = tmp_path / "exported"
    assert run_export("--input", awkward_records, "--format", fmt, "--output", out) == 0
    # Every file is named after its bytes; nothing is lost to a shared name.
    files = image_files(out / "images")
    assert len(files) == len(AWKWARD_NAMES)
    extensions = Image.registered_extensions()
    assert all(extensions[os.path.splitext(n)[1]] == f for n, f in files.items()), files
    assert {"a.jpg", "sub/a.jpg", "images/a.jpg", "x/images/y/a.jpg", "f.png"} <= set(files)
    assert sum(name.startswith("e~") for name in files) == 2  # e.webp's PNG and e.png
    one_file_per_image = fmt in ("voc", "yolo")  # s.jpg and s.png would share s.xml, s.txt
    assert sum(name.startswith("s~") for name in files) == (2 if one_file_per_image else 0)
    if fmt == "yolo":  # Where Ultralytics looks: the last /images/ of the path → /labels/.
        for label in ("labels/a.txt", "labels/sub/a.txt", "images/labels/a.txt",
                      "images/x/labels/y/a.txt"):  # fmt: skip
            assert (out / label).is_file(), label
        labels = [p for p in out.rglob("*.txt") if "labels" in p.parts]
        assert len(labels) == len(AWKWARD_NAMES)
    if fmt == "voc":
        assert len(list((out / "annotations").glob("*.xml"))) == len(AWKWARD_NAMES)

    args = [a.format(out=out) for a in READ_BACK[fmt]]
    splits = ["--splits", "source"] if fmt != "csv" else []  # CSV carries no splits
    assert run_create(*args, *splits, "--output", tmp_path / "again") == 0
    again = read_output(tmp_path / "again")
    assert again["errors"] == []
    first, second = by_bytes(read_output(awkward_records)), by_bytes(again)
    assert sorted(first) == sorted(second)
    for digest, (split, name, classes, corners) in first.items():
        split_again, name_again, classes_again, corners_again = second[digest]
        assert split_again == (split if splits else "train")
        assert classes_again == classes
        assert np.allclose(corners_again, corners, atol=1e-5), name
        assert (name_again.removeprefix("images/") if fmt == "yolo" else name_again) in files


def png_bytes(width=40, height=30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_names_follow_the_bytes_and_stay_inside_the_folder(tmp_path):
    made = "m~" + "0" * 16  # Looks like a name export makes unique, so it is made unique too.
    named = [  # (image/filename, image/source_id, image bytes) and the name export must give.
        (b"g.jpg", b"", png_bytes(), "g.png"),  # image/format says jpeg; the bytes are PNG.
        (b"h", b"", jpeg_bytes(41), "h.jpg"),
        (b"frame.001", b"", jpeg_bytes(42), "frame.001.jpg"),
        (b"bad\nname.jpg", b"ok", jpeg_bytes(43), "ok.jpg"),  # A newline would split lists.
        (made.encode() + b".jpg", b"", jpeg_bytes(44), None),
        # Unsafe names and an image/key/sha256 that is a path: the name comes from the bytes.
        (b"../x.jpg", b"/etc/y", jpeg_bytes(45), None),
    ]
    records = [
        example(image__encoded=data, image__format=b"jpeg", image__filename=filename,
                image__source_id=source_id, image__key__sha256=b"../../escape",
                image__height=30, image__width=40)
        for filename, source_id, data, _ in named
    ]  # fmt: skip
    write_records(tmp_path / "r.tfrecord", records)
    out = tmp_path / "out"
    assert run_export("--input", tmp_path / "r.tfrecord", "--format", "yolo", "--output", out) == 0
    digest = [hashlib.sha256(data).hexdigest()[:16] for _, _, data, _ in named]
    want = [name for *_, name in named[:4]] + [f"{made}~{digest[4]}.jpg", f"{digest[5]}.jpg"]
    files = image_files(out / "images")
    assert sorted(files) == sorted(want)
    assert all(Image.registered_extensions()[os.path.splitext(n)[1]] == f for n, f in files.items())
    listed = (out / "r.txt").read_text().splitlines()
    assert sorted(listed) == sorted(f"./images/{name}" for name in want)
    for name in want:
        assert (out / "labels" / f"{os.path.splitext(name)[0]}.txt").is_file()
    assert sorted(os.listdir(tmp_path)) == ["out", "r.tfrecord"]
