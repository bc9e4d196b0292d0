"""The dataset card's pipeline-config lines, parsed with the TF Object Detection API's own
message definitions and followed to the files they name."""

import ast
import copy
import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
from fnmatch import fnmatch

import pytest
import tensorflow as tf
import yaml
from conftest import SAMPLE, run_create
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from transforms.builds.report import dataset_card

# TF OD API's messages as its PyPI distribution ships them: generated `*_pb2.py` modules whose
# descriptors protoc compiled from the API's `.proto` files. No package on PyPI ships those
# files, and installing this one would pull in TF Models and another TensorFlow, so its sdist
# is only downloaded, pinned by hash, and read.
OD_API = "tf-models-research-object-detection==2.8.0.post1"
OD_API_SHA256 = "c701ea455646553a64c5f161641e8d5a94054b162b81961dcfff3dd619870004"


def _download(folder) -> str:
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{OD_API} --hash=sha256:{OD_API_SHA256}\n")
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes"]
    done = subprocess.run(
        [*pip, "-r", str(requirements), "-d", str(folder)], capture_output=True, text=True
    )
    if done.returncode:
        reason = f"cannot download {OD_API}: {(done.stderr.strip().splitlines() or [''])[-1]}"
        if os.environ.get("CI"):  # CI reaches PyPI: there a failed download is a failure.
            pytest.fail(reason)
        pytest.skip(reason)
    (sdist,) = [p for p in os.listdir(folder) if p.endswith(".tar.gz")]
    return str(folder / sdist)


def _file_descriptors(sdist: str) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """{proto file name: descriptor} from the `serialized_pb` of each generated module."""
    files = {}
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if not fnmatch(member.name, "*/object_detection/protos/*_pb2.py"):
                continue
            tree = ast.parse(archive.extractfile(member).read())
            for node in ast.walk(tree):
                if isinstance(node, ast.keyword) and node.arg == "serialized_pb":
                    proto = descriptor_pb2.FileDescriptorProto.FromString(
                        ast.literal_eval(node.value)
                    )
                    files[proto.name] = proto
    return files


@pytest.fixture(scope="module")
def od_api(tmp_path_factory):
    """The OD API's message class of a name: `od_api("TrainEvalPipelineConfig")`."""
    files = _file_descriptors(_download(tmp_path_factory.mktemp("od_api")))
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:  # Dependencies first, as the pool requires.
        if name not in added:
            for dependency in files[name].dependency:
                add(dependency)
            pool.Add(files[name])
            added.add(name)

    for name in files:
        add(name)
    return lambda name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"object_detection.protos.{name}")
    )


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    out = tmp_path_factory.mktemp("card")
    assert run_create("--format", "voc", "--annotations", f"{SAMPLE}/annotations", "--output", out,
                      "--images", f"{SAMPLE}/images", "--splits", "valid=0.2,train=0.6,test=0.2",
                      "--num-shards", "2") == 0  # fmt: skip
    with open(out / "manifest.json", encoding="utf-8") as handle:
        return out, json.load(handle)


def config_of(card: str, od_api):
    snippet = card.split("## Training with the TF Object Detection API")[1].split("```")[1]
    return text_format.Parse(snippet, od_api("TrainEvalPipelineConfig")())


def check_readers(config, out, manifest) -> None:
    """Train on `train`, evaluate the others in order; every pattern finds its split's shards
    as the OD API finds them, with tf.io.gfile.glob."""
    readers = {"train": config.train_input_reader}
    readers.update(zip(["valid", "test"], config.eval_input_reader, strict=True))
    for name, reader in readers.items():
        assert reader.label_map_path == str(out / "label_map.pbtxt")
        (pattern,) = reader.tf_record_input_reader.input_path
        found = sorted(os.path.relpath(p, out) for p in tf.io.gfile.glob(pattern))
        assert found == manifest["splits"][name]["files"]
        assert (reader.shuffle, reader.num_epochs) == ((True, 0) if name == "train" else (False, 1))


def test_card_snippet_is_a_pipeline_config_that_reads_every_split(output, od_api):
    out, manifest = output
    card = (out / "README.md").read_text(encoding="utf-8")
    check_readers(config_of(card, od_api), out, manifest)
    label_map = text_format.Parse(
        (out / "label_map.pbtxt").read_text(encoding="utf-8"), od_api("StringIntLabelMap")()
    )
    assert f"`num_classes` to {max(item.id for item in label_map.item)}, the largest id" in card


def test_odd_folder_names_survive_text_format_and_glob(output, od_api, tmp_path):
    out, manifest = output
    odd = tmp_path / 'o "q" \\ ü [1] *?'  # Text format escapes; glob characters.
    shutil.copytree(out, odd)
    check_readers(config_of(dataset_card(manifest, str(odd)), od_api), odd, manifest)


@pytest.mark.parametrize(
    "names, trains",
    [
        (["val2017", "train2017"], "train2017"),
        (["Trainval", "test"], "Trainval"),
        (["small", "large", "tiny"], "large"),  # No train*: the split with the most examples.
    ],
)
def test_one_split_trains_and_every_other_one_evaluates(output, od_api, names, trains):
    _, manifest = output
    renamed = copy.deepcopy(manifest)
    sizes = {"small": 3, "large": 9, "tiny": 1}
    renamed["splits"] = {
        name: {**split, "examples": sizes.get(name, 5)}
        for name, split in zip(names, manifest["splits"].values(), strict=False)
    }
    config = config_of(dataset_card(renamed, "/data/out"), od_api)
    path = lambda reader: reader.tf_record_input_reader.input_path[0]  # noqa: E731
    assert path(config.train_input_reader) == f"/data/out/{trains}/{trains}.tfrecord-*"
    assert [path(reader) for reader in config.eval_input_reader] == [
        f"/data/out/{name}/{name}.tfrecord-*" for name in names if name != trains
    ]


def test_masks_and_keypoints_are_read_by_the_od_api_decoder(output, od_api):
    """With masks and keypoints the readers ask the decoder for them: PNG masks (its default
    is float lists) and the keypoints every object carries."""
    _, manifest = output
    extended = {
        **manifest,
        "options": {**manifest["options"], "include_masks": True},
        "keypoints_per_object": 17,
    }
    config = config_of(dataset_card(extended, "/data/out"), od_api)
    enum = od_api("InputReader").DESCRIPTOR.fields_by_name["mask_type"].enum_type
    for reader in (config.train_input_reader, *config.eval_input_reader):
        assert reader.load_instance_masks
        assert enum.values_by_number[reader.mask_type].name == "PNG_MASKS"
        assert reader.num_keypoints == 17
    plain = config_of(dataset_card(manifest, "/data/out"), od_api)
    assert not plain.train_input_reader.HasField("load_instance_masks")
    assert not plain.train_input_reader.HasField("num_keypoints")


def tf_vision_config(card: str) -> dict:
    snippet = card.split("## Training with TF-Vision")[1].split("```yaml")[1].split("```")[0]
    return yaml.safe_load(snippet)["task"]


def test_tf_vision_lines_name_every_shard_and_num_classes(output):
    out, manifest = output
    card = (out / "README.md").read_text(encoding="utf-8")
    task = tf_vision_config(card)
    largest = max(entry["id"] for entry in manifest["classes"].values())
    assert task["model"]["num_classes"] == largest + 1
    assert f"`num_classes` is {largest + 1}, the largest id + 1" in card
    assert task["annotation_file"] == ""
    for key, split in (("train_data", "train"), ("validation_data", "valid")):
        found = sorted(os.path.relpath(p, out) for p in tf.io.gfile.glob(task[key]["input_path"]))
        assert found == manifest["splits"][split]["files"]
    assert f'To evaluate `test`: `input_path: "{out}/test/test.tfrecord-*"`' in card


def test_tf_vision_lines_survive_odd_folder_names(output, tmp_path):
    out, manifest = output
    odd = tmp_path / 'o "q" \\ ü [1] *?'
    shutil.copytree(out, odd)
    task = tf_vision_config(dataset_card(manifest, str(odd)))
    found = sorted(
        os.path.relpath(p, odd) for p in tf.io.gfile.glob(task["train_data"]["input_path"])
    )
    assert found == manifest["splits"]["train"]["files"]
    card = dataset_card(manifest, str(tmp_path / "a,b"))
    assert "TF-Vision splits `input_path` at commas" in card


def test_label_map_csv_is_written_beside_the_pbtxt(output):
    out, manifest = output
    assert manifest["label_map_csv"] == "label_map.csv"
    rows = list(csv.reader((out / "label_map.csv").read_text(encoding="utf-8").splitlines()))
    assert rows == [[str(entry["id"]), name] for name, entry in manifest["classes"].items()]


def test_gaps_in_ids_and_names_label_map_csv_cannot_carry(output):
    _, manifest = output
    classes = {**manifest["classes"], "cr\rx": {"id": 90, "objects": 1}}  # COCO's largest id.
    card = dataset_card({**manifest, "classes": classes}, "/data/out")
    assert "`num_classes` to 90, the largest id" in card  # Not 4, the number of classes.
    assert tf_vision_config(card)["model"]["num_classes"] == 91
    assert '**Left out of `label_map.csv`: `"cr\\rx"`**' in card
