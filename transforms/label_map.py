"""Reading and writing `label_map.pbtxt` exactly as the TF Object Detection API does, and
writing the `label_map.csv` TF-Vision reads.

The API parses label maps with protobuf text format into its `StringIntLabelMap` message, so
every syntax it accepts (`item {` or `item: {`, either quote, any field order, comments,
`display_name`, keypoints) is accepted here by building the same message schema at run time;
the API itself is not a dependency.
"""

from __future__ import annotations

import csv
import io
import os

from apache_beam.io.filesystems import FileSystems
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from transforms.paths import open_regular
from transforms.records import ClassDeclaration, excerpt, writable_text


def _build_messages():
    proto = descriptor_pb2.FileDescriptorProto(
        name="odrecords_string_int_label_map.proto",
        package="object_detection.protos",
        syntax="proto2",
    )
    item = proto.message_type.add(name="StringIntLabelMapItem")
    optional, repeated = (
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    string, int32, message, enum = (
        descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
        descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        descriptor_pb2.FieldDescriptorProto.TYPE_ENUM,
    )
    keypoint = item.nested_type.add(name="KeypointMap")
    keypoint.field.add(name="id", number=1, label=optional, type=int32)
    keypoint.field.add(name="label", number=2, label=optional, type=string)
    frequency = item.enum_type.add(name="LVISFrequency")
    for number, name in enumerate(["UNSPECIFIED", "FREQUENT", "COMMON", "RARE"]):
        frequency.value.add(name=name, number=number)
    item.field.add(name="name", number=1, label=optional, type=string)
    item.field.add(name="id", number=2, label=optional, type=int32)
    item.field.add(name="display_name", number=3, label=optional, type=string)
    item.field.add(
        name="keypoints",
        number=4,
        label=repeated,
        type=message,
        type_name=".object_detection.protos.StringIntLabelMapItem.KeypointMap",
    )
    item.field.add(name="ancestor_ids", number=5, label=repeated, type=int32)
    item.field.add(name="descendant_ids", number=6, label=repeated, type=int32)
    item.field.add(
        name="frequency",
        number=7,
        label=optional,
        type=enum,
        type_name=".object_detection.protos.StringIntLabelMapItem.LVISFrequency",
    )
    item.field.add(name="instance_count", number=8, label=optional, type=int32)
    label_map = proto.message_type.add(name="StringIntLabelMap")
    label_map.field.add(
        name="item",
        number=1,
        label=repeated,
        type=message,
        type_name=".object_detection.protos.StringIntLabelMapItem",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("object_detection.protos.StringIntLabelMap")
    )


StringIntLabelMap = _build_messages()

# Ids are int32 in the API's message; 0 is its implicit background.
MAX_ID = 2**31 - 1


class LabelMapError(ValueError):
    """A label map that cannot be parsed or that the TF OD API would reject."""


def _parse(text: str):
    message = StringIntLabelMap()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise LabelMapError(f"not a valid label map: {error}") from None
    return message


def parse_label_map(text: str) -> dict[str, int]:
    """Returns {class name: id} from label map text, keyed by `name` as the API does.

    Ids must be >= 1 (0 is the API's implicit background and may only name 'background'),
    and neither names nor ids may repeat: a repeated id would silently merge two classes.
    """
    message = _parse(text)
    classes: dict[str, int] = {}
    seen_ids: set[int] = set()
    for item in message.item:
        if item.id == 0 and item.name == "background":
            continue
        if item.id < 1:
            raise LabelMapError(f"class {item.name!r} has id {item.id}; ids must be >= 1")
        if not item.name:
            raise LabelMapError(f"the item with id {item.id} has no name")
        if item.name in classes:
            raise LabelMapError(f"class {item.name!r} appears twice")
        if item.id in seen_ids:
            raise LabelMapError(f"id {item.id} is given to two classes")
        classes[item.name] = item.id
        seen_ids.add(item.id)
    if not classes:
        raise LabelMapError("the label map has no items")
    return classes


def _read_text(path: str) -> str:
    if FileSystems.get_scheme(path) is None and not os.path.isfile(path):
        raise LabelMapError("not a regular file")  # A FIFO would never end.
    with open_regular(path) as handle:  # A missing object is FileNotFoundError, as on disk.
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise LabelMapError("the label map is not UTF-8 text") from None


def read_label_map(path: str) -> dict[str, int]:
    """Reads and parses a label map from any Beam filesystem path."""
    return parse_label_map(_read_text(path))


def read_label_names(path: str) -> tuple[dict[int, str], dict[str, int]]:
    """A label map for reading records back: {id: readable name} (`display_name` where it
    has one, as label maps whose `name`s are codes such as '/m/01g317' do, else `name`) and
    {name or display name: id}, to find the id of a record's class text."""
    text = _read_text(path)
    parse_label_map(text)  # The same checks as on the create side.
    items = [item for item in _parse(text).item if item.id >= 1]
    names = {item.id: item.display_name or item.name for item in items}
    ids = {item.name: item.id for item in items}
    ids.update({item.display_name: item.id for item in items if item.display_name})
    return names, ids


def categories_from_counts(counts: list[tuple[tuple[str, int | None], int]]) -> dict[str, int]:
    """{class name: id} from how often each (class text, label) pair occurs in records read
    without a label map.

    Each name keeps the id it carries most often; names without a usable id (no label, or an
    id another, more frequent name holds) get new ids after the largest, in name order."""
    by_name: dict[str, dict[int, int]] = {}
    for (name, number), count in counts:
        ids = by_name.setdefault(name, {})
        if number is not None and number >= 1:
            ids[number] = ids.get(number, 0) + count
    chosen: dict[str, int] = {}
    taken: set[int] = set()
    for name in sorted(by_name, key=lambda n: (-sum(by_name[n].values()), n)):
        for number, _ in sorted(by_name[name].items(), key=lambda pair: (-pair[1], pair[0])):
            if number not in taken:
                chosen[name] = number
                taken.add(number)
                break
    next_id = max(taken, default=0) + 1
    for name in sorted(set(by_name) - set(chosen)):
        chosen[name] = next_id
        next_id += 1
    return dict(sorted(chosen.items(), key=lambda pair: pair[1]))


def usable_class_name(name: object) -> bool:
    """Whether a class name can go into a label map and be read back as the same name: a
    non-empty string UTF-8 can encode. (The API's parser refuses an item without a name, and
    protobuf cannot write lone surrogates; everything else is escaped.)"""
    return writable_text(name) and name != ""


def derive_label_map(
    used: list[str],
    declared: list[ClassDeclaration] = (),
    keep_unused: bool = False,
    previous: dict[str, int] | None = None,
) -> tuple[dict[str, int], dict[str, int]]:
    """The label map of a dataset without a given one, and {name: source id} of the declared
    classes whose id had to change.

    Declared ids (COCO category ids, YOLO index + 1) are kept when all are valid label map ids
    (1 to 2**31 - 1) and distinct, so predictions map back to the source's ids. Otherwise ids
    are numbered: a class keeps the id it had in the `previous` build ({name: id}, classes
    since removed included), so a checkpoint trained on an earlier version keeps its
    meaning, and new classes get ids after every id used before, in sorted name order
    (declared-id order for declared classes). A first build thus numbers sorted names from 1.
    A declared class without objects is kept only with `keep_unused`.
    """
    used_names = set(used)
    source_ids: dict[str, int] = {}
    for declaration in declared:  # Merged classes (class map) keep the lowest id.
        earlier = source_ids.get(declaration.name, declaration.source_id)
        source_ids[declaration.name] = min(earlier, declaration.source_id)
    names = [name for name in source_ids if keep_unused or name in used_names]
    undeclared = sorted(used_names - set(source_ids))
    ids = [source_ids[name] for name in names]
    if (
        declared
        and not undeclared
        and all(1 <= i <= MAX_ID for i in ids)
        and len(set(ids)) == len(ids)
    ):
        return {name: source_ids[name] for name in names}, {}
    ordered = sorted(names, key=lambda name: (source_ids[name], name)) + undeclared
    label_map = _numbered(ordered, previous or {})
    renumbered = {n: source_ids[n] for n in names if source_ids[n] != label_map[n]}
    return label_map, renumbered


def _numbered(ordered: list[str], previous: dict[str, int]) -> dict[str, int]:
    """Ids for `ordered` names: each keeps its `previous` id, new ones follow every id used."""
    label_map = {name: previous[name] for name in ordered if name in previous}
    next_id = max(previous.values(), default=0) + 1
    for name in ordered:
        if name not in label_map:
            label_map[name] = next_id
            next_id += 1
    return dict(sorted(label_map.items(), key=lambda pair: pair[1]))


def retired_classes(label_map: dict[str, int], previous: dict[str, int]) -> dict[str, int]:
    """The `previous` classes ({name: id}, themselves including earlier retired ones) that
    `label_map` no longer has, with the ids they had: kept in the manifest so that no later
    build gives their ids to other classes, and a class that returns gets its id back."""
    used_ids = set(label_map.values())
    return {
        name: number
        for name, number in sorted(previous.items())
        if name not in label_map and number not in used_ids
    }


def format_label_map(classes: dict[str, int]) -> str:
    """Label map text in id order, with names quoted and escaped as protobuf text format
    requires. Raises LabelMapError for a class the text could not give back as it is (see
    `usable_class_name`) and for an id outside 1 to 2**31 - 1: a label map that does not
    parse back must never be written."""
    message = StringIntLabelMap()
    for name, number in sorted(classes.items(), key=lambda pair: pair[1]):
        if not usable_class_name(name):
            raise LabelMapError(f"class name {excerpt(repr(name))} cannot be written")
        if not isinstance(number, int) or not 1 <= number <= MAX_ID:
            raise LabelMapError(f"class {excerpt(repr(name))} has id {excerpt(number)}")
        message.item.add(name=name, id=number)
    return text_format.MessageToString(message, as_utf8=True) or "# no classes\n"


def csv_writable(name: str) -> bool:
    """Whether `label_map.csv` can carry a class name: TF-Vision reads the file in text mode,
    which drops carriage returns even inside quotes."""
    return "\r" not in name


def format_label_map_csv(classes: dict[str, int]) -> str:
    """`label_map.csv`: `id,name` lines in id order, without a header, which is what
    TF-Vision's label-map decoder (`TfExampleDecoderLabelMap`) reads to map class text to
    ids: `csv.reader` rows of exactly two fields, names quoted where they hold a comma, a
    quote or a newline. Names it could not give back (see `csv_writable`) are left out; the
    dataset card names them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for name, number in sorted(classes.items(), key=lambda pair: pair[1]):
        if csv_writable(name):
            writer.writerow([number, name])
    return buffer.getvalue()
