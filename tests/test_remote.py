"""Remote storage for real: annotations and images in an S3 bucket, output to a bucket, through
Beam's own S3 filesystem against a local S3-compatible server; compared with a local run."""

import json
import shutil

import boto3
import pytest
from conftest import SAMPLE, read_output, run_create
from services import s3_server
from test_incremental import reencode
from test_portable import same_output
from test_yolo_layouts import ultralytics_layout, write_yaml

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **CREDENTIALS)
        yield endpoint, client


def upload(client, folder, bucket, prefix):
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")


def download(client, bucket, prefix, folder):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    for page in pages:
        for entry in page.get("Contents", []):
            target = folder / entry["Key"][len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, entry["Key"], str(target))


def test_create_from_and_to_s3_equals_the_local_run(s3, tmp_path):
    endpoint, client = s3
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    (data / "annotations" / "missing.xml").write_text(
        "<annotation><filename>missing.jpg</filename></annotation>"
    )
    client.create_bucket(Bucket="datasets")
    client.create_bucket(Bucket="records")
    upload(client, data, "datasets", "shapes")
    options = [f"--s3_endpoint_url={endpoint}", "--s3_region_name=us-east-1",
               "--s3_access_key_id=testing", "--s3_secret_access_key=testing"]  # fmt: skip
    args = ["--format", "voc", "--splits", "train=0.7,val=0.3", "--num-shards", "2"]
    assert run_create(*args, "--annotations", data / "annotations", "--images", data / "images",
                      "--output", tmp_path / "local") == 0  # fmt: skip
    assert run_create(*args, "--annotations", "s3://datasets/shapes/annotations/",
                      "--images", "s3://datasets/shapes/images",
                      "--output", "s3://records/shapes", *options) == 0  # fmt: skip
    download(client, "records", "shapes", tmp_path / "remote")
    same_output(tmp_path / "local", tmp_path / "remote")
    names = {p.name for p in (tmp_path / "remote").iterdir()}
    assert {"manifest.json", "label_map.pbtxt", "errors.jsonl", "README.md"} <= names
    assert ".parts" not in names


def test_yolo_dataset_in_s3_equals_the_local_run(s3, tmp_path):
    """A data.yaml in a bucket names folders, which object stores know only as key prefixes;
    images without a label file are still negative examples there."""
    endpoint, client = s3
    root = tmp_path / "coco8"
    ultralytics_layout(root)
    write_yaml(
        root / "data.yaml", {"train": "images/train", "val": "images/val", "names": ["a", "b"]}
    )
    client.create_bucket(Bucket="yolo")
    upload(client, root, "yolo", "coco8")
    options = [f"--s3_endpoint_url={endpoint}", "--s3_region_name=us-east-1",
               "--s3_access_key_id=testing", "--s3_secret_access_key=testing"]  # fmt: skip
    args = ["--format", "yolo", "--splits", "source", "--num-shards", "1"]
    assert run_create(*args, "--annotations", root, "--output", tmp_path / "local") == 0
    for number, annotations in enumerate(["s3://yolo/coco8", "s3://yolo/coco8/data.yaml"]):
        out = f"s3://yolo/out{number}"
        assert run_create(*args, "--annotations", annotations, "--output", out, *options) == 0
        download(client, "yolo", f"out{number}", tmp_path / f"remote{number}")
        same_output(tmp_path / "local", tmp_path / f"remote{number}")
    assert read_output(tmp_path / "local")["manifest"]["images"]["written"] == 5


def test_a_rebuild_in_s3_reuses_the_examples_of_unchanged_images(s3, tmp_path):
    """Files in a bucket are told unchanged by their size and upload time, and shards reused
    whole are copied inside the bucket."""
    endpoint, client = s3
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    client.create_bucket(Bucket="daily")
    upload(client, data, "daily", "shapes")
    args = ["--format", "voc", "--splits", "train=0.7,val=0.3", "--num-shards", "2",
            "--annotations", "s3://daily/shapes/annotations/",
            "--images", "s3://daily/shapes/images", "--output", "s3://daily/out",
            f"--s3_endpoint_url={endpoint}", "--s3_region_name=us-east-1",
            "--s3_access_key_id=testing", "--s3_secret_access_key=testing"]  # fmt: skip
    assert run_create(*args) == 0
    reencode(data / "images/shapes-003.jpg", 60)
    client.upload_file(str(data / "images/shapes-003.jpg"), "daily", "shapes/images/shapes-003.jpg")
    assert run_create(*args) == 0
    download(client, "daily", "out", tmp_path / "remote")
    reuse = json.loads((tmp_path / "remote" / "manifest.json").read_text())["reuse"]
    assert reuse["images"] == {"reused": 23, "converted": 1}
    assert reuse["shards"] == {"copied": 3, "written": 1}
    local = ["--annotations", data / "annotations", "--images", data / "images"]
    assert run_create(*args[:6], *local, "--output", tmp_path / "local") == 0
    same_output(tmp_path / "local", tmp_path / "remote")
