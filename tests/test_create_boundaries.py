"""`odrecords create` on hostile values, through the real command: values beyond int64 or
float32, empty and non-UTF-8 class names, image paths that are FIFOs or folders, image limits
against Pillow's own, and unusable limits. Each job must finish with every object accounted
for and a label map that reads back."""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib

import pytest
from conftest import build_folder, read_output, run_create
from PIL import Image

from transforms.label_map import MAX_ID, parse_label_map

CSV_HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


def jpeg(path, size=(40, 30)) -> None:
    Image.new("RGB", size, (90, 120, 150)).save(path, "JPEG")


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` and that holds no pixels: a bomb that
    costs a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def write_csv(path, rows: list[str]) -> None:
    path.write_text(CSV_HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")


def finished(output) -> dict:
    """The output of a finished job, checked: counts add up, the label map reads back with
    the TF OD API's rules and holds only ids it can hold, the errors file is UTF-8 JSON."""
    output = build_folder(output)
    result = read_output(output)
    manifest = result["manifest"]
    assert all(manifest["accounting"].values()), manifest["accounting"]
    text = (output / "label_map.pbtxt").read_text(encoding="utf-8")
    if result["label_map"]:
        assert parse_label_map(text) == result["label_map"]
    assert all(1 <= number <= MAX_ID for number in result["label_map"].values())
    return result


def error_for(result: dict, source_end: str) -> dict:
    (error,) = [e for e in result["errors"] if e["source"].endswith(source_end)]
    return error


def test_coco_values_beyond_int64_and_float32_cost_their_box_not_the_job(tmp_path):
    jpeg(tmp_path / "a.jpg")
    box = {"image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8]}
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 2**70, "height": 30}],
        "categories": [
            {"id": 1, "name": "person", "keypoints": ["nose"]},
            {"id": 2**40, "name": "wide"},
            {"id": 2**70, "name": "huge"},
        ],
        "annotations": [
            {**box, "id": 10, "keypoints": [4, 5, 2]},
            {**box, "id": 11, "keypoints": [4, 5, 1e30]},
            {**box, "id": 12, "keypoints": [4, 5, 7]},
            {**box, "id": 13, "keypoints": [1e300, 5, 2]},
            {**box, "id": 14, "keypoints": [4, 5, 2], "area": 1e300},
            {**box, "id": 15, "category_id": 2**40},
            {**box, "id": 16, "segmentation": {"size": [30, 40], "counts": "o" * 640_000}},
        ],
    }
    (tmp_path / "instances.json").write_text(json.dumps(document))
    output = tmp_path / "out"
    code = run_create(
        "--format", "coco", "--annotations", tmp_path / "instances.json", "--output", output,
        "--include-keypoints", "--include-masks", "--keep-empty-classes", "--num-shards", "1",
    )  # fmt: skip
    assert code == 0
    result = finished(output)
    assert result["manifest"]["objects"]["written"] == 2
    assert sorted(result["label_map"]) == ["person", "wide"]  # 'huge' has no usable id.
    for number in (11, 12, 13, 14, 16):
        assert error_for(result, f"#annotation[{number}]")["objects"] == 1
    (example,) = result["splits"]["train"]
    assert example["image/object/class/text"] == [b"person", b"wide"]


def test_empty_and_non_utf8_class_names_never_reach_the_label_map(tmp_path):
    root = tmp_path / "yolo"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    jpeg(root / "images" / "train" / "a.jpg")
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.4 0.4\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: ['', cat]\n")
    code = run_create(
        "--format", "yolo", "--annotations", root, "--output", tmp_path / "yolo-out",
        "--keep-empty-classes", "--num-shards", "1",
    )  # fmt: skip
    assert code == 2  # An empty name in data.yaml is refused before the job starts.
    assert not (tmp_path / "yolo-out").exists()

    labelme = tmp_path / "labelme"
    labelme.mkdir()
    jpeg(labelme / "a.jpg")
    shapes = [
        {"label": label, "points": [[1, 1], [9, 9]], "shape_type": "rectangle"}
        for label in ("\ud800bad", "cat")
    ]
    document = {"imagePath": "a.jpg", "imageHeight": 30, "imageWidth": 40, "shapes": shapes}
    (labelme / "a.json").write_text(json.dumps(document))  # The surrogate as a JSON escape.
    code = run_create(
        "--format", "labelme", "--annotations", labelme, "--output", tmp_path / "labelme-out",
        "--num-shards", "1",
    )  # fmt: skip
    assert code == 0
    result = finished(tmp_path / "labelme-out")
    assert list(result["label_map"]) == ["cat"]
    (error,) = result["errors"]
    assert error["objects"] == 1 and "\\ud800bad" in error["reason"]


def test_an_image_path_that_is_a_fifo_or_a_folder_is_an_error_not_a_hang(tmp_path):
    jpeg(tmp_path / "a.jpg")
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    (tmp_path / "folder.jpg").mkdir()
    # Were the FIFO opened for reading, this writer would end the wait (with an empty file,
    # and the test would fail on its reason) rather than hang the test.
    writer = threading.Thread(target=lambda: os.close(os.open(fifo, os.O_WRONLY)), daemon=True)
    writer.start()
    write_csv(
        tmp_path / "labels.csv",
        [f"{name},40,30,cat,1,1,9,9" for name in ("a.jpg", "fifo.jpg", "folder.jpg")],
    )
    code = run_create(
        "--format", "csv", "--annotations", tmp_path / "labels.csv", "--output", tmp_path / "out",
    )  # fmt: skip
    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # Lets the writer go.
    writer.join()
    assert code == 0
    result = finished(tmp_path / "out")
    reasons = {e["image"]: (e["stage"], e["reason"], e["objects"]) for e in result["errors"]}
    assert reasons == {
        "fifo.jpg": ("image", "image path is a FIFO, not a regular file", 1),
        "folder.jpg": ("image", "image path is a folder, not a regular file", 1),
    }


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_our_pixel_limit_decides_not_pillows(tmp_path, monkeypatch, capsys):
    jpeg(tmp_path / "a.jpg", (60, 50))  # 3,000 pixels.
    (tmp_path / "bomb.png").write_bytes(png_header(30_000, 10_000))
    (tmp_path / "big.png").write_bytes(png_header(15_000, 10_000))
    write_csv(
        tmp_path / "labels.csv",
        [f"{name},60,50,cat,1,1,9,9" for name in ("a.jpg", "bomb.png", "big.png")],
    )
    code = run_create(
        "--format", "csv", "--annotations", tmp_path / "labels.csv", "--output", tmp_path / "o",
    )  # fmt: skip
    assert code == 0
    reasons = {e["image"]: e["reason"] for e in finished(tmp_path / "o")["errors"]}
    assert reasons == {
        # The header is read before Pillow or TensorFlow decodes anything.
        "bomb.png": "image is 30000x10000, more than 100000000 pixels",
        "big.png": "image is 15000x10000, more than 100000000 pixels",
    }

    # Pillow's limit below ours (its default is 89 million): ours still decides.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    write_csv(tmp_path / "one.csv", ["a.jpg,60,50,cat,1,1,9,9"])
    for limit, written in ((5000, 1), (2000, 0)):
        output = tmp_path / f"limit-{limit}"
        code = run_create(
            "--format", "csv", "--annotations", tmp_path / "one.csv", "--output", output,
            "--max-image-pixels", limit,
        )  # fmt: skip
        assert code == (0 if written else 1)
        result = finished(output)
        assert result["manifest"]["images"]["written"] == written
        if not written:
            assert result["errors"][0]["reason"] == "image is 60x50, more than 2000 pixels"
    capsys.readouterr()


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--max-image-bytes", "0"),
        ("--max-image-bytes", "-5"),
        ("--max-image-pixels", "0"),
        ("--config", "max_image_bytes: 0"),
        ("--config", "max_image_pixels: lots"),
    ],
)
def test_unusable_image_limits_exit_2_with_one_line(tmp_path, capsys, flag, value):
    jpeg(tmp_path / "a.jpg")
    write_csv(tmp_path / "labels.csv", ["a.jpg,40,30,cat,1,1,9,9"])
    if flag == "--config":
        (tmp_path / "config.yaml").write_text(value)
        value = tmp_path / "config.yaml"
    args = ["--format", "csv", "--annotations", tmp_path / "labels.csv", "--output", tmp_path / "o"]
    assert run_create(*args, flag, value) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "must be a whole number >= 1" in line


def test_a_byte_limit_beyond_memory_is_not_allocated(tmp_path):
    jpeg(tmp_path / "a.jpg")
    write_csv(tmp_path / "labels.csv", ["a.jpg,40,30,cat,1,1,9,9"])
    code = run_create(
        "--format", "csv", "--annotations", tmp_path / "labels.csv", "--output", tmp_path / "o",
        "--max-image-bytes", 10**15,
    )  # fmt: skip
    assert code == 0
    assert finished(tmp_path / "o")["manifest"]["images"]["written"] == 1
