"""Label maps in every syntax the TF OD API's label_map_util accepts, and the ones it rejects."""

import csv

import pytest
import tensorflow as tf
from google.protobuf import text_format

from transforms.label_map import (
    LabelMapError,
    StringIntLabelMap,
    csv_writable,
    derive_label_map,
    format_label_map,
    format_label_map_csv,
    parse_label_map,
)
from transforms.records import ClassDeclaration


def test_accepts_all_label_map_util_syntaxes():
    text = """
    # a comment
    item {
      id: 1
      name: 'raccoon'
    }
    item: {
      display_name: "Dog"  # trailing comment
      name: "dog" id: 7
      keypoints { id: 0 label: "nose" }
      frequency: RARE
    }
    item { name: 'background' id: 0 }
    """
    assert parse_label_map(text) == {"raccoon": 1, "dog": 7}


@pytest.mark.parametrize(
    "text, message",
    [
        ("item { name: 'a' id: 1 } item { name: 'b' id: 1 }", "id 1 is given to two classes"),
        ("item { name: 'a' id: 1 } item { name: 'a' id: 2 }", "appears twice"),
        ("item { name: 'a' id: 0 }", "ids must be >= 1"),
        ("item { id: 3 }", "has no name"),
        ("item { name: 'a' id: 1 ", "not a valid label map"),
        ("", "has no items"),
    ],
)
def test_rejects_label_maps_the_api_would_misread(text, message):
    with pytest.raises(LabelMapError, match=message):
        parse_label_map(text)


def test_derived_ids_are_sorted_names_from_one():
    assert derive_label_map(["zebra", "ant", "zebra", "Émeu"]) == (
        {"ant": 1, "zebra": 2, "Émeu": 3},
        {},
    )


def declare(*pairs):
    return [ClassDeclaration(name, number, "src") for name, number in pairs]


def test_declared_ids_are_kept_with_their_gaps():
    declared = declare(("person", 1), ("car", 3), ("dog", 18), ("unused", 90))
    assert derive_label_map(["dog", "person", "car"], declared) == (
        {"person": 1, "car": 3, "dog": 18},
        {},
    )
    assert derive_label_map(["dog"], declared, keep_unused=True)[0] == {
        "person": 1,
        "car": 3,
        "dog": 18,
        "unused": 90,
    }


def test_invalid_declared_ids_are_renumbered_from_one_and_reported():
    declared = declare(("dataset", 0), ("cat", 1), ("dog", 2))
    assert derive_label_map(["cat", "dog", "dataset"], declared) == (
        {"dataset": 1, "cat": 2, "dog": 3},
        {"dataset": 0, "cat": 1, "dog": 2},
    )


def test_merged_classes_keep_the_lowest_declared_id():
    declared = declare(("vehicle", 3), ("vehicle", 8), ("person", 1))
    assert derive_label_map(["vehicle", "person"], declared) == ({"vehicle": 3, "person": 1}, {})


def test_written_label_map_parses_back_as_protobuf_text():
    classes = {"raccoon": 1, 'a "quoted" name': 2, "ünïcode": 3}
    message = StringIntLabelMap()
    text_format.Parse(format_label_map(classes), message)
    assert {item.name: item.id for item in message.item} == classes


def test_label_map_csv_reads_back_as_tf_visions_decoder_reads_it(tmp_path):
    """`id,name` rows read as TfExampleDecoderLabelMap._process_csv reads them: csv.reader
    over a text-mode GFile, exactly two fields a row, no header."""
    classes = {"plain": 1, "a,b": 3, 'say "hi"': 7, "two\nlines": 8, " ünï ": 9, "cr\rx": 10}
    path = tmp_path / "label_map.csv"
    path.write_text(format_label_map_csv(classes), encoding="utf-8")
    read = {}
    with tf.io.gfile.GFile(str(path), "r") as handle:
        for row in csv.reader(handle, delimiter=","):
            assert len(row) == 2
            read[row[1]] = int(row[0])
    assert read == {name: number for name, number in classes.items() if name != "cr\rx"}
    assert not csv_writable("cr\rx") and csv_writable("two\nlines")
