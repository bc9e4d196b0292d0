"""Remote storage for real: annotations and images in an S3 or Google Cloud Storage bucket,
output to a bucket, through Beam's own S3 and GCS filesystems against local servers (an
S3-compatible one, a GCS emulator); compared with a local run."""

import json
import shutil

import boto3
import pytest
from apache_beam.internal.gcp import auth
from conftest import SAMPLE, read_output, run_create
from google.cloud import storage
from services import gcs_server, s3_server
from test_incremental import reencode
from test_portable import same_output
from test_yolo_layouts import ultralytics_layout, write_yaml

from pipelines.latest import latest
from pipelines.settings import use_filesystem_options
from transforms.builds.outputs import delete_path

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
    # Shards written by worker processes, which reach the bucket with the same options.
    assert run_create(*args, "--annotations", "s3://datasets/shapes/annotations/",
                      "--images", "s3://datasets/shapes/images", "--processes", "2",
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


@pytest.fixture(scope="module")
def gcs():
    """The emulator, and a client of it. The google-cloud-storage client, Beam's included,
    talks to the endpoint in STORAGE_EMULATOR_HOST. Beam's GcsIO first looks for Google
    credentials (Application Default Credentials) and connects anonymously when there are
    none, after retrying for half a minute; the emulator wants none, and real ones would be
    refreshed over the network, so here the lookup finds none at once."""
    with gcs_server() as endpoint, pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        patch.setattr(auth, "get_service_credentials", lambda options: None)
        client = storage.Client.create_anonymous_client()
        client.project = "test"  # Creating a bucket names a project; the emulator takes any.
        yield client


def gcs_upload(client, folder, bucket, prefix):
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            blob = client.bucket(bucket).blob(f"{prefix}/{path.relative_to(folder)}")
            blob.upload_from_filename(str(path))


def gcs_download(client, bucket, prefix, folder) -> list[str]:
    """Downloads every object under `prefix/` into `folder`; returns their relative names."""
    names = []
    for blob in client.list_blobs(bucket, prefix=prefix + "/"):
        names.append(blob.name[len(prefix) + 1 :])
        target = folder / names[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
    return sorted(names)


def test_create_from_and_to_gcs_equals_the_local_run_and_replaces_it(gcs, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    (data / "annotations" / "missing.xml").write_text(
        "<annotation><filename>missing.jpg</filename></annotation>"
    )
    gcs.create_bucket("datasets")
    gcs.create_bucket("records")
    gcs_upload(gcs, data, "datasets", "shapes")
    # A folder in a bucket is a key prefix, named here as on disk: without a trailing `/`.
    source = ["--annotations", "gs://datasets/shapes/annotations",
              "--images", "gs://datasets/shapes/images"]  # fmt: skip
    local = ["--annotations", data / "annotations", "--images", data / "images"]
    for number, shards in enumerate(["3", "2"]):
        args = ["--format", "voc", "--splits", "train=0.7,val=0.3", "--num-shards", shards]
        assert run_create(*args, *local, "--output", tmp_path / f"local{number}") == 0
        assert run_create(*args, *source, "--output", "gs://records/shapes") == 0
        remote = tmp_path / f"remote{number}"
        names = gcs_download(gcs, "records", "shapes", remote)
        same_output(tmp_path / f"local{number}", remote)
        manifest = read_output(remote)["manifest"]
        # Exactly this run's files: the earlier run's shards are gone, no scratch is left.
        assert names == sorted([*manifest["written"], "manifest.json"])
        # The earlier run's 6 shards and their 6 index files.
        assert manifest["earlier_output"]["removed"] == (0 if number == 0 else 12)
        assert manifest["inputs"]["images"] == "gs://datasets/shapes/images"


def test_a_missing_label_map_in_gcs_is_a_usage_error(gcs, tmp_path, capsys):
    gcs.create_bucket("labels")
    args = ["--format", "voc", "--annotations", f"{SAMPLE}/annotations", "--images",
            f"{SAMPLE}/images", "--output", tmp_path / "out"]  # fmt: skip
    assert run_create(*args, "--label-map", "gs://labels/missing.pbtxt") == 2
    assert "No such file or directory" in capsys.readouterr().err


def test_deleting_a_gcs_folder_deletes_what_is_under_it_and_nothing_else(gcs):
    gcs.create_bucket("folders")
    names = ["out/v1/manifest.json", "out/v1/train/train.tfrecord-00000-of-00001",
             "out/v10/manifest.json", "out/v1.json", "out/LATEST"]  # fmt: skip
    for name in names:
        gcs.bucket("folders").blob(name).upload_from_string(b"x")
    delete_path("gs://folders/out/v1")  # A key prefix, as odrecords names folders.
    delete_path("gs://folders/out/LATEST")
    left = sorted(blob.name for blob in gcs.list_blobs("folders"))
    assert left == ["out/v1.json", "out/v10/manifest.json"]


def check_versions_in_bucket(out: str, names, download_version, tmp_path, options=()) -> None:
    """Three builds with `--versions --keep-versions 2` into `out` (a bucket folder): the
    pointer names the third, the first is gone whole, nothing but versions and the pointer
    is there, and the latest version reads back complete. `names()` lists the objects under
    `out`; `download_version(relative, folder)` downloads a folder of it."""
    args = ["--format", "voc", "--annotations", f"{SAMPLE}/annotations", "--images",
            f"{SAMPLE}/images", "--output", out, "--versions", "--keep-versions", "2",
            *options]  # fmt: skip
    use_filesystem_options(list(options))
    published = []
    for _ in range(3):
        assert run_create(*args) == 0
        published.append(latest(out).rsplit("/", 1)[-1])
    assert latest(out) == f"{out}/versions/{published[-1]}"
    assert {name.split("/")[0] for name in names()} == {"LATEST", "versions"}
    assert {name.split("/")[1] for name in names() if name != "LATEST"} == set(published[1:])
    folder = tmp_path / "version"
    download_version(f"versions/{published[-1]}", folder)
    result = read_output(folder)
    assert result["manifest"]["build"]["id"] == published[-1]
    assert sum(len(examples) for examples in result["splits"].values()) == 24


def test_versions_in_s3(s3, tmp_path):
    endpoint, client = s3
    client.create_bucket(Bucket="versions")

    def names() -> list[str]:
        listed = client.list_objects_v2(Bucket="versions", Prefix="shapes/").get("Contents", [])
        return [entry["Key"][len("shapes/") :] for entry in listed]

    def download_version(relative: str, folder) -> None:
        download(client, "versions", f"shapes/{relative}", folder)

    options = [f"--s3_endpoint_url={endpoint}", "--s3_region_name=us-east-1",
               "--s3_access_key_id=testing", "--s3_secret_access_key=testing"]  # fmt: skip
    check_versions_in_bucket("s3://versions/shapes", names, download_version, tmp_path, options)


def test_versions_in_gcs(gcs, tmp_path):
    gcs.create_bucket("versions")

    def names() -> list[str]:
        return [b.name[len("shapes/") :] for b in gcs.list_blobs("versions", prefix="shapes/")]

    def download_version(relative: str, folder) -> None:
        gcs_download(gcs, "versions", f"shapes/{relative}", folder)

    check_versions_in_bucket("gs://versions/shapes", names, download_version, tmp_path)


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
