"""`odrecords create` on hostile annotation files, through the real command: values no
reader expected (infinities, 400-digit integers, lists where numbers or objects belong, ids
beyond int64), bytes that are not UTF-8, nesting 100,000 levels deep, fields beyond the
csv module's limit, YAML alias bombs, FIFOs where files should be, and label files linked
out of the dataset. Each job must end normally (exit 0, or 1 when nothing could be
written), write a manifest whose accounting balances, and say in its error records what
was lost."""

from __future__ import annotations

import json
import os
import threading

import pytest
from conftest import SAMPLE, run_create
from PIL import Image
from test_create_boundaries import error_for, finished, write_csv

HUGE = 10**400  # Beyond floats: float(HUGE) raises OverflowError.
DEEP = 100_000


def jpeg(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (90, 120, 150)).save(path, "JPEG")


def create(*args) -> int:
    return run_create(*[str(arg) for arg in args], "--num-shards", "1")


def reasons(result: dict) -> dict[str, tuple[str, int]]:
    """Error records by the end of their source: (reason, objects lost)."""
    return {e["source"].rsplit("/", 1)[-1]: (e["reason"], e["objects"]) for e in result["errors"]}


def coco(tmp_path, document: dict | str, *args: str) -> tuple[int, dict | None]:
    """Writes a COCO file beside a.jpg and b.jpg and runs create on it."""
    jpeg(tmp_path / "a.jpg")
    jpeg(tmp_path / "b.jpg")
    path = tmp_path / "instances.json"
    if isinstance(document, dict):
        path.write_text(json.dumps(document))
    else:
        path.write_bytes(document.encode("utf-8", "surrogateescape"))
    code = create("--format", "coco", "--annotations", path, "--output", tmp_path / "out", *args)
    out = tmp_path / "out"
    written = (out / "manifest.json").exists() or (out / ".builds").exists()
    return code, finished(out) if written else None


def coco_document(**changes) -> dict:
    box = {"image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8]}
    document = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30},
        ],
        "annotations": [{**box, "id": 10}, {**box, "id": 11, "image_id": 2}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    return {**document, **changes}


def test_infinite_sizes_and_corners_in_voc_and_csv_cost_a_box_at_most(tmp_path):
    jpeg(tmp_path / "a.jpg")
    obj = "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>{}</bndbox></object>"
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>inf</width><height>1e999</height>"
        "</size>" + obj.format("<xmax>9</xmax><ymax>9</ymax>")
        + obj.format("<xmax>inf</xmax><ymax>9</ymax>") + "</annotation>"
    )  # fmt: skip
    assert create("--format", "voc", "--annotations", tmp_path, "--output", tmp_path / "v") == 0
    result = finished(tmp_path / "v")
    assert result["manifest"]["objects"]["written"] == 1
    assert error_for(result, "a.xml#object[2]")["objects"] == 1
    assert (
        "<xmax> of object 'cat' is not a finite number: 'inf'"
        in reasons(result)["a.xml#object[2]"][0]
    )

    write_csv(tmp_path / "l.csv", ["a.jpg,inf,nan,cat,1,1,9,9", "a.jpg,40,30,cat,1,1,inf,9"])
    code = create(
        "--format", "csv", "--annotations", tmp_path / "l.csv", "--output", tmp_path / "c"
    )
    assert code == 0
    result = finished(tmp_path / "c")
    assert result["manifest"]["objects"]["written"] == 1
    assert reasons(result)["l.csv:3"] == ("xmax is not a finite number: 'inf'", 1)


def test_integers_of_400_digits_cost_their_shape_or_box(tmp_path):
    jpeg(tmp_path / "a.jpg")
    shapes = [
        {"label": "cat", "shape_type": "rectangle", "points": [[1, 1], [9, 9]]},
        {"label": "dog", "shape_type": "rectangle", "points": [[HUGE, 1], [9, 9]]},
    ]
    document = {"imagePath": "a.jpg", "imageWidth": HUGE, "imageHeight": 30, "shapes": shapes}
    (tmp_path / "a.json").write_text(json.dumps(document))
    code = create(
        "--format", "labelme", "--annotations", tmp_path / "a.json", "--output", tmp_path / "l"
    )
    assert code == 0
    result = finished(tmp_path / "l")
    assert result["manifest"]["objects"]["written"] == 1
    reason, objects = reasons(result)["a.json#shape[2]"]
    assert objects == 1 and reason.startswith("point x is not a finite number: <an integer of")

    (tmp_path / "a.json").unlink()
    annotations = coco_document()["annotations"]
    annotations[1] = {**annotations[1], "bbox": [2, HUGE, 10, 8], "area": -HUGE}
    code, result = coco(tmp_path / "c", coco_document(annotations=annotations))
    assert code == 0
    assert result["manifest"]["objects"]["written"] == 1
    assert reasons(result)["instances.json#annotation[11]"][1] == 1


def test_wrong_kinds_of_json_values_cost_their_row_or_object(tmp_path):
    annotations = coco_document()["annotations"]
    annotations[1] = {**annotations[1], "category_id": [1]}
    annotations.append({"id": 12, "image_id": 1, "category_id": 1, "bbox": [True, 1, 2, 3]})
    annotations.append({"id": 13, "image_id": 1, "category_id": 1, "bbox": {"x": 1}})
    annotations.append(
        {"id": 14, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "iscrowd": [1]}
    )
    code, result = coco(tmp_path / "c", coco_document(annotations=annotations))
    assert code == 0
    found = reasons(result)
    assert found["instances.json#annotations[1]"] == (
        "category_id is a list, not an integer: [1]",
        1,
    )
    assert found["instances.json#annotation[12]"] == (
        "bbox value is a boolean, not a number: True",
        1,
    )
    assert found["instances.json#annotation[14]"] == ("iscrowd is not 0 or 1: [1]", 1)
    assert result["manifest"]["objects"] == {
        **result["manifest"]["objects"],
        "read": 5,
        "written": 1,
    }

    jpeg(tmp_path / "a.jpg")
    box = {"name": "cat", "bounding_box": {"top": 1, "left": 1, "height": 8, "width": 8}}
    good = {
        "data_row": {"external_id": "a.jpg"},
        "projects": {"p": {"labels": [{"annotations": {"objects": [box]}}]}},
    }
    rows = [
        good,
        {**good, "data_row": [{"external_id": "a.jpg"}]},
        {**good, "projects": [1]},
        [good],
    ]
    (tmp_path / "e.ndjson").write_text("".join(json.dumps(row) + "\n" for row in rows))
    code = create(
        "--format", "labelbox", "--annotations", tmp_path / "e.ndjson", "--output", tmp_path / "lb"
    )
    assert code == 0
    found = reasons(finished(tmp_path / "lb"))
    assert found == {
        "e.ndjson:2": ("data_row is a list, not an object", 1),
        "e.ndjson:3": ("projects is a list, not an object", 0),
        "e.ndjson:4": ("line is a list, not a JSON object", 0),
    }


def test_bytes_that_are_not_utf8_cost_the_element_holding_them(tmp_path):
    jpeg(tmp_path / "a.jpg")
    jpeg(tmp_path / "b.jpg")
    box = '{"name": "%s", "bounding_box": {"top": 1, "left": 1, "height": 8, "width": 8}}'
    row = (
        '{"data_row": {"external_id": "%s"}, '
        '"projects": {"p": {"labels": [{"annotations": {"objects": [%s, %s]}}]}}}\n'
    )
    data = (row % ("a.jpg", box % "cat", box % "do\udcffg")) + (
        row % ("b\udcff.jpg", box % "cat", box % "cat")
    )
    # A key that is not UTF-8 makes the row's structure unknown: the row is an error.
    data += (row % ("b.jpg", box % "cat", box % "cat")).replace('"objects"', '"obj\udcffects"')
    (tmp_path / "e.ndjson").write_bytes(data.encode("utf-8", "surrogateescape"))
    code = create(
        "--format", "labelbox", "--annotations", tmp_path / "e.ndjson", "--output", tmp_path / "lb"
    )
    assert code == 0
    result = finished(tmp_path / "lb")
    assert result["manifest"]["objects"]["written"] == 1
    found = reasons(result)
    assert found["e.ndjson:1#object[2]"] == ("holds bytes that are not UTF-8 text", 1)
    assert found["e.ndjson:2"][1] == 2 and "not UTF-8" in found["e.ndjson:2"][0]
    assert found["e.ndjson:3"] == (
        "row has keys holding bytes that are not UTF-8 text; row skipped",
        0,
    )

    # COCO: a bad byte in one image's file_name costs that image (and so its annotation);
    # everything after it is still read.
    document = json.dumps(coco_document()).replace('"b.jpg"', '"b\udcff.jpg"')
    code, result = coco(tmp_path / "c", document)
    assert code == 0
    assert result["manifest"]["images"]["written"] == 1
    found = reasons(result)
    assert found["instances.json#images[1]"] == ("image holds bytes that are not UTF-8 text", 0)
    assert found["instances.json#annotation[11]"] == ("annotation names unknown image id 2", 1)


def test_json_nested_100000_deep_is_an_error_not_a_crash(tmp_path):
    deep = "[" * DEEP + "]" * DEEP
    first, second = coco_document()["annotations"]
    document = json.dumps(
        {"categories": [{"id": 1, "name": "cat"}], **coco_document(annotations=[first])}
    ).replace("}]}", "}, " + deep + ", " + json.dumps(second) + "]}")
    code, result = coco(tmp_path / "c", document)
    assert code == 0
    assert result["manifest"]["objects"]["written"] == 1
    ((source, (reason, objects)),) = reasons(result).items()
    assert source == "instances.json" and objects == 0
    assert reason.startswith("a value nested too deeply to read at character ")
    assert reason.endswith("; the rest of the file was skipped")

    jpeg(tmp_path / "a.jpg")
    (tmp_path / "deep.json").write_text(deep)
    (tmp_path / "a.json").write_text(json.dumps([{"image": "a.jpg", "annotations": []}]))
    code = create("--format", "createml", "--annotations", tmp_path, "--output", tmp_path / "cml")
    assert code == 0
    assert reasons(finished(tmp_path / "cml")) == {
        "deep.json": ("nested too deeply to read; file skipped", 0)
    }


def test_coco_ids_beyond_int64_are_errors_before_any_join(tmp_path):
    box = {"id": 20, "image_id": 2**64, "category_id": 1, "bbox": [1, 1, 5, 5]}
    document = coco_document(
        images=[*coco_document()["images"], {"id": 2**64, "file_name": "a.jpg"}],
        categories=[{"id": 1, "name": "cat", "keypoints": ["nose"]}, {"id": -(2**70), "name": "x"}],
        annotations=[
            *coco_document()["annotations"],
            box,
            {**box, "id": 21, "image_id": 1, "category_id": 2**63},
            {**box, "id": 22, "image_id": 1, "keypoints": [1, 1, 2**64]},
        ],
    )
    code, result = coco(tmp_path, document, "--include-keypoints")
    assert code == 0
    found = reasons(result)
    assert found["instances.json#images[2]"][0].startswith("image id is beyond int64")
    assert found["instances.json#categories[1]"][0].startswith("category id is beyond int64")
    assert found["instances.json#annotations[2]"] == (
        "image_id is beyond int64: 18446744073709551616",
        1,
    )
    assert found["instances.json#annotations[3]"][1] == 1
    assert found["instances.json#annotation[22]"][1] == 1
    assert result["manifest"]["objects"]["written"] == 2


def test_non_utf8_imagesets_and_yolo_list_lines_cost_their_line(tmp_path):
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for stem in ("a", "b"):
        jpeg(voc / "Annotations" / f"{stem}.jpg")
        (voc / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename></annotation>"
        )
    (voc / "ImageSets" / "Main" / "train.txt").write_bytes(b"a\nb\xff\n")
    code = create(
        "--format", "voc", "--annotations", voc / "Annotations", "--splits", "source",
        "--output", tmp_path / "v",
    )  # fmt: skip
    assert code == 0
    result = finished(tmp_path / "v")
    assert len(result["splits"]["train"]) == 1
    found = reasons(result)
    assert found["train.txt:2"][0].startswith("list line holds bytes that are not UTF-8 text")
    assert found["b.xml"] == ("the source puts the image in no split", 0)

    yolo = tmp_path / "yolo"
    for stem in ("a", "b"):
        jpeg(yolo / "images" / f"{stem}.jpg")
    (yolo / "labels").mkdir()
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (yolo / "train.txt").write_bytes(b"./images/a.jpg\n./images/\xff.jpg\n")
    (yolo / "data.yaml").write_text("train: train.txt\nnames: [cat]\n")
    code = create("--format", "yolo", "--annotations", yolo, "--output", tmp_path / "y")
    assert code == 0
    result = finished(tmp_path / "y")
    assert result["manifest"]["objects"]["written"] == 1
    assert reasons(result)["train.txt:2"][0].startswith("list line holds bytes that are not UTF-8")


def test_a_csv_field_beyond_the_csv_modules_limit_skips_nothing(tmp_path):
    jpeg(tmp_path / "a.jpg")
    rows = ["a.jpg,40,30,cat,1,1,9,9,", f"a.jpg,40,30,cat,2,2,9,9,{'x' * 300_000}"]
    rows += ["a.jpg,40,30,dog,3,3,9,9,", "a.jpg,40,30,dog,4,4,9,9,"]
    rows += [f"/{'y' * 300_000}.jpg,40,30,dog,4,4,9,9,"]  # Rejected, and not echoed whole.
    (tmp_path / "l.csv").write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax,notes\n" + "\n".join(rows) + "\n"
    )
    code = create(
        "--format", "csv", "--annotations", tmp_path / "l.csv", "--output", tmp_path / "o"
    )
    assert code == 0
    result = finished(tmp_path / "o")
    assert result["manifest"]["objects"]["written"] == 4
    (error,) = result["errors"]
    assert error["source"].endswith("l.csv:6") and error["objects"] == 1
    assert error["reason"].endswith("… lies outside the images root")
    assert len(json.dumps(error)) < 400


def test_a_known_coco_key_that_is_not_a_list_is_an_error_saying_what_was_skipped(tmp_path):
    images = {"1": {"id": 1, "file_name": "a.jpg"}, "2": {"id": 2, "file_name": "b.jpg"}}
    code, result = coco(tmp_path, coco_document(images=images))
    assert code == 1  # Nothing could be written: the job still ends with its manifest.
    found = reasons(result)
    assert found["instances.json"] == (
        '"images" is an object of 2 entries, not a list: all skipped',
        0,
    )
    assert found["instances.json#annotation[10]"] == ("annotation names unknown image id 1", 1)
    assert result["manifest"]["objects"]["rejected"] == 2


@pytest.mark.parametrize("where", ["data.yaml", "class map", "config"])
def test_yaml_alias_bombs_are_refused_before_the_job_starts(tmp_path, capsys, where):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    jpeg(root / "images" / "a.jpg")
    (root / "data.yaml").write_text("train: images\nnames: [cat]\n")
    args = ["--format", "yolo", "--annotations", root, "--output", tmp_path / "o"]
    if where == "data.yaml":
        (root / "data.yaml").write_text(f"train: images\nnames: [cat]\n{bomb}")
    else:
        (tmp_path / "bomb.yaml").write_text(bomb)
        args += ["--class-map" if where == "class map" else "--config", tmp_path / "bomb.yaml"]
    assert create(*args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "anchors and aliases (& and *) are not accepted" in line
    assert not (tmp_path / "o").exists()


def fifo(path) -> threading.Thread:
    """A FIFO at `path` and a thread that would end any read of it at once (with an empty
    file, which fails the test on its reason) rather than let it hang the test."""
    os.mkfifo(path)
    writer = threading.Thread(target=lambda: os.close(os.open(path, os.O_WRONLY)), daemon=True)
    writer.start()
    return writer


def release(path, writer: threading.Thread) -> None:
    os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    writer.join()


def test_fifos_where_annotation_and_label_files_should_be_are_errors_not_hangs(tmp_path):
    jpeg(tmp_path / "a.jpg")
    write_csv(tmp_path / "good.csv", ["a.jpg,40,30,cat,1,1,9,9"])
    writer = fifo(tmp_path / "pipe.csv")
    code = create("--format", "csv", "--annotations", tmp_path, "--output", tmp_path / "c")
    release(tmp_path / "pipe.csv", writer)
    assert code == 0
    result = finished(tmp_path / "c")
    assert result["manifest"]["objects"]["written"] == 1
    reason, objects = reasons(result)["pipe.csv"]
    assert reason.endswith("pipe.csv is a FIFO, not a regular file; file skipped") and objects == 0

    # --format auto sniffs JSON files: it passes over a FIFO, which the job then reports.
    coco_folder = tmp_path / "coco"
    jpeg(coco_folder / "a.jpg")
    (coco_folder / "b.json").write_text(
        json.dumps(coco_document(images=[coco_document()["images"][0]]))
    )
    writer = fifo(coco_folder / "a.json")
    code = create("--format", "auto", "--annotations", coco_folder, "--output", tmp_path / "a")
    release(coco_folder / "a.json", writer)
    assert code == 0
    result = finished(tmp_path / "a")
    assert result["manifest"]["objects"]["written"] == 1
    assert reasons(result)["a.json"][0].endswith("is a FIFO, not a regular file; file skipped")

    root = tmp_path / "yolo"
    for stem in ("a", "b"):
        jpeg(root / "images" / f"{stem}.jpg")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("train: images\nnames: [cat]\n")
    writer = fifo(root / "labels" / "b.txt")
    code = create("--format", "yolo", "--annotations", root, "--output", tmp_path / "y")
    release(root / "labels" / "b.txt", writer)
    assert code == 0
    result = finished(tmp_path / "y")
    assert result["manifest"]["images"]["written"] == 1
    (error,) = result["errors"]
    assert error["image"] == "images/b.jpg" and "is a FIFO, not a regular file" in error["reason"]


def test_a_label_file_linked_out_of_the_dataset_is_refused_unread(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2 " * 20 + "\n")
    root = tmp_path / "yolo"
    for stem in ("a", "b", "c"):
        jpeg(root / "images" / f"{stem}.jpg")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "b.txt").symlink_to(secret)
    (root / "labels" / "c.txt").write_text("0 0.5 0.5 0.2 0.2 " + "7 " * 500 + "\n")
    (root / "data.yaml").write_text("train: images\nnames: [cat]\n")
    code = create("--format", "yolo", "--annotations", root, "--output", tmp_path / "o")
    assert code == 0
    result = finished(tmp_path / "o")
    text = (tmp_path / "o" / "errors.jsonl").read_text()
    assert "hunter2" not in text
    found = {e["image"]: (e["reason"], e["objects"]) for e in result["errors"]}
    assert found["images/b.jpg"] == (
        "label file is a link that leads outside the dataset; not read",
        0,
    )
    # 505 fields make a polygon line, whose first point outside the image is named.
    assert found["images/c.jpg"] == ("point 3 (7, 7) is outside [0, 1]", 1)
    assert all(len(e["reason"]) <= 160 for e in result["errors"])


def test_a_coco_key_that_is_not_utf8_is_an_error_saying_what_was_skipped(tmp_path):
    document = json.dumps(coco_document()).replace('"annotations"', '"annot\udcffations"')
    code, result = coco(tmp_path, document)
    assert code == 0  # Both images, as negative examples: their annotations went unread.
    (error,) = result["errors"]
    assert error["reason"] == (
        "a top-level key holds bytes that are not UTF-8 text: its value, a list of 2 entries, "
        "was skipped"
    )


def test_an_annotation_file_linked_out_of_its_folder_is_refused_unread(tmp_path):
    (tmp_path / "secret.csv").write_text("filename,password\nhunter2,hunter2\n")
    folder = tmp_path / "annotations"
    jpeg(folder / "a.jpg")
    write_csv(folder / "a.csv", ["a.jpg,40,30,cat,1,1,9,9"])
    (folder / "evil.csv").symlink_to(tmp_path / "secret.csv")
    code = create("--format", "csv", "--annotations", folder, "--output", tmp_path / "o")
    assert code == 0
    result = finished(tmp_path / "o")
    assert "hunter2" not in (tmp_path / "o" / "errors.jsonl").read_text()
    assert reasons(result) == {
        "evil.csv": (
            "annotation file is a link that leads outside the annotations folder; file skipped",
            0,
        )
    }
    # Named alone, a link is what the user asked for.
    (tmp_path / "named.csv").symlink_to(folder / "a.csv")
    code = create(
        "--format", "csv", "--annotations", tmp_path / "named.csv", "--images", folder,
        "--output", tmp_path / "named",
    )  # fmt: skip
    assert code == 0
    assert finished(tmp_path / "named")["manifest"]["objects"]["written"] == 1


def test_a_label_map_or_class_map_that_is_a_fifo_or_names_no_text_is_a_usage_error(tmp_path):
    fifo = tmp_path / "labels.pbtxt"
    os.mkfifo(fifo)
    bad_map = tmp_path / "map.yaml"
    bad_map.write_text('cat: "\\ud800"\n')  # A lone surrogate: no output file can hold it.
    empty_map = tmp_path / "empty.yaml"
    empty_map.write_text('cat: "  "\n')
    for extra in (
        ["--label-map", fifo],
        ["--class-map", bad_map],
        ["--class-map", empty_map],
    ):
        code = run_create(
            "--format", "voc", "--annotations", f"{SAMPLE}/annotations",
            "--images", f"{SAMPLE}/images", "--output", tmp_path / "out", *extra,
        )  # fmt: skip
        assert code == 2, extra
        assert not (tmp_path / "out").exists()
