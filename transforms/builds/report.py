"""The dataset's paperwork: counts, errors output, label map, manifest and dataset card.

All of it is produced inside the graph, so it is written on every runner, including a
Dataflow job whose launcher has long exited.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from google.protobuf import text_encoding

from transforms.builds.changes import card_lines, changes_entry, previous_summary
from transforms.builds.checks import Thresholds, check
from transforms.builds.index import INDEX_DIR, is_index_name
from transforms.builds.layout import BUILDS, LATEST, MANIFEST, VERSIONS, Layout, PreviousBuild, join
from transforms.builds.outputs import delete_path, is_shard_name, with_checksum
from transforms.builds.publish import (
    REPLACED_MANIFEST,
    check_publishable,
    publish_flat,
    remove_earlier_builds,
    write_json,
    write_pointer,
    write_text,
)
from transforms.builds.reuse import reuse_entry
from transforms.builds.safe_write import (
    Ours,
    UnsafeWrite,
    check_folder,
    check_place,
    digest_of_file,
    new_folder,
    write_file,
)
from transforms.choices import SAME_SPLIT
from transforms.duplicates import DUPLICATE_KINDS, MAX_DISTANCE, duplicates_across
from transforms.images.loader import ImageLoader
from transforms.images.orientation import manifest_entry as orientation_entry
from transforms.label_map import (
    csv_writable,
    format_label_map,
    format_label_map_csv,
    retired_classes,
)
from transforms.records import STAGE_IMAGE, STAGE_READ, ErrorRecord
from transforms.report.build import (
    REPORT_FILE,
    STATS_FILE,
    Rejected,
    report_texts,
    statistics,
)
from transforms.report.stats import DatasetStats

LABEL_MAP = "label_map.pbtxt"
LABEL_MAP_CSV = "label_map.csv"
ERRORS_FILE = "errors.jsonl"
CARD = "README.md"

_SPECIFICS = re.compile(r"'[^']*'|\"[^\"]*\"|\([^)]*\)|\d+(?:\.\d+)?")
_GLOB_SPECIALS = re.compile(r"([\\*?\[\]])")


def reason_kind(reason: str) -> str:
    """A reason with its specifics (names, numbers, tuples) blanked, for grouping in reports."""
    return _SPECIFICS.sub("…", reason)[:120]


def error_counts(error: ErrorRecord) -> dict:
    """What one error adds to the manifest's `errors`: itself, and the objects it lost by
    reason, and by split and class where it knows them."""
    kind = f"{error.stage}: {reason_kind(error.reason)}"
    counts = {
        "count": 1,
        "objects": error.objects,
        "by_stage": {error.stage: {"count": 1, "objects": error.objects}},
        "by_reason": {kind: 1},
    }
    if error.objects:
        counts["objects_by_reason"] = {kind: error.objects}
        if error.split:
            counts["by_split"] = {
                error.split: {"objects": error.objects, "by_reason": {kind: error.objects}}
            }
        if error.classes:
            counts["by_class"] = {
                name: {"objects": lost, "by_reason": {kind: lost}}
                for name, lost in Counter(error.classes).items()
            }
    return {"errors": counts}


def _sorted_lost(counts: dict) -> dict:
    """Lost objects per split or class, named in order, their reasons most common first."""
    return {
        name: {
            "objects": entry["objects"],
            "by_reason": dict(sorted(entry["by_reason"].items(), key=lambda r: (-r[1], r[0]))),
        }
        for name, entry in sorted(counts.items())
    }


def _reported(counts: dict, key: str) -> dict:
    return {
        "count": counts.get(key, {}).get("count", 0),
        "first": counts.get(key, {}).get("first", []),
    }


def _duplicate_pairs(found: dict) -> dict:
    return {
        where: {
            "pairs": found.get(where, {}).get("pairs", 0),
            "images": found.get(where, {}).get("images", 0),
            "first": found.get(where, {}).get("first", []),
        }
        for where in ("across_splits", "within_split")
    }


def _duplicates(counts: dict, policy: str) -> dict:
    """The manifest's `duplicates`: pairs of examples under different names whose images
    are the same bytes (`exact`) or the same picture (`near`, not counting exact pairs), in
    different splits or in one, with the images in such pairs and the first pairs named."""
    found = counts.get("duplicates", {})
    near = found.get("near", {})
    duplicates = {
        "exact": _duplicate_pairs(found.get("exact", {})),
        "near": {
            **_duplicate_pairs(near),
            "max_distance": MAX_DISTANCE,
            "not_hashed": near.get("not_hashed", 0),
            "not_compared": near.get("not_compared", 0),
        },
    }
    if policy == SAME_SPLIT:
        kept = found.get("kept_in_one_split", {})
        duplicates["kept_in_one_split"] = {
            key: kept.get(key, 0) for key in ("groups", "images", "moved")
        }
    return duplicates


def copies_text(counts: dict) -> str:
    """` + N copies in other splits` for the manifest's `images` or `objects`, when any."""
    copies = counts["copies_in_other_splits"]
    return f" + {copies} copies in other splits" if copies else ""


def build_manifest(
    counts: dict,
    shard_files: list[str],
    label_map: dict[str, int],
    renumbered: dict[str, int],
    settings: dict,
    previous: dict | None = None,
    reuse: dict | None = None,
) -> dict:
    """The manifest: what was written where, and the accounting that proves nothing was lost.

    What was read counts once; an annotation the source lists in several splits is written
    once in each, and its copies are counted apart (`copies_in_other_splits`). `previous` is
    the summary of the build this one follows (`changes.previous_summary`), for `changes`;
    `reuse` what this build could reuse of it (`reuse.reuse_entry`'s arguments)."""
    errors = counts.get("errors", {})
    by_stage = errors.get("by_stage", {})
    split_counts = counts.get("splits", {})
    splits = {
        name: {
            "examples": split_counts.get(name, {}).get("examples", 0),
            "objects": split_counts.get(name, {}).get("objects", 0),
            "rejected": split_counts.get(name, {}).get("rejected", 0),
            "files": sorted(
                f for f in shard_files if f.startswith(f"{name}/") and is_shard_name(f)
            ),
        }
        for name in settings["options"]["split_names"]
    }
    for split in splits.values():
        # The count every shard's name ends with (`-of-NNNNN`); shards that got no example
        # are not written, so the files may be fewer.
        files = split["files"]
        split["num_shards"] = int(files[0].rsplit("-of-", 1)[1]) if files else 0
    written_examples = sum(split["examples"] for split in splits.values())
    written_objects = sum(split["objects"] for split in splits.values())
    read, copies = counts.get("read", {}), counts.get("copies", {})
    images = {
        "referenced": read.get("images", 0),
        "written": written_examples,
        "rejected": by_stage.get(STAGE_IMAGE, {}).get("count", 0),
        "converted": counts.get("converted", {}),
        "size_differs_from_annotation": counts.get("size_mismatch", 0),
        "merged_from_several_files": _reported(counts, "merged"),
        "in_several_splits": _reported(counts, "split_overlap"),
        "copies_in_other_splits": copies.get("images", 0),
        "source_ids": {
            "from_source": counts.get("source_ids", {}).get("from_source", 0),
            "from_name": counts.get("source_ids", {}).get("from_name", 0),
            "reassigned": _reported(counts.get("source_ids", {}), "reassigned"),
        },
    }
    dropped = counts.get("dropped", {})
    objects = {
        "read": read.get("objects", 0)
        + by_stage.get(STAGE_READ, {}).get("objects", 0)
        + sum(dropped.values()),
        "written": written_objects,
        "rejected": errors.get("objects", 0),
        "dropped": sum(dropped.values()),
        "dropped_by_class": dict(sorted(dropped.items())),
        "clipped": counts.get("clipped", 0),
        "copies_in_other_splits": copies.get("objects", 0),
    }
    classes = {
        name: {"id": number, "objects": counts.get("classes", {}).get(name, 0)}
        for name, number in sorted(label_map.items(), key=lambda pair: pair[1])
    }
    return {
        "splits": splits,
        "label_map": LABEL_MAP,
        "label_map_csv": LABEL_MAP_CSV,
        "keypoints_per_object": max(map(int, counts.get("keypoints_per_object", {})), default=0),
        "classes": classes,
        "renumbered_classes": {
            name: {"source_id": source_id, "id": label_map[name]}
            for name, source_id in sorted(renumbered.items())
        },
        "errors": {
            "count": errors.get("count", 0),
            "objects": errors.get("objects", 0),
            "by_stage": by_stage,
            "by_reason": dict(sorted(errors.get("by_reason", {}).items())),
            "objects_by_reason": dict(sorted(errors.get("objects_by_reason", {}).items())),
            "by_split": _sorted_lost(errors.get("by_split", {})),
            "by_class": _sorted_lost(errors.get("by_class", {})),
            "files": [ERRORS_FILE] if errors.get("count") else [],
        },
        "images": images,
        "objects": objects,
        "exif_orientation": orientation_entry(counts.get("orientation", {})),
        "duplicates": _duplicates(counts, settings["options"]["duplicates"]),
        "reuse": reuse_entry(counts, **reuse) if reuse else None,
        "changes": changes_entry(counts, previous, splits, classes),
        "accounting": {
            "images_balanced": images["referenced"] + images["copies_in_other_splits"]
            == images["written"] + images["rejected"],
            "objects_balanced": objects["read"] + objects["copies_in_other_splits"]
            == objects["written"] + objects["rejected"] + objects["dropped"],
        },
        **settings,
    }


def _training_split(splits: dict[str, dict]) -> str | None:
    """The split to train on: the first whose name starts with `train` (`train`, `train2017`,
    `trainval`); without one, the largest, as training sets are."""
    for name in splits:
        if name.lower().startswith("train"):
            return name
    return max(splits, key=lambda name: splits[name]["examples"], default=None)


def _input_reader(field: str, output: str, split: str, extras: list[str]) -> list[str]:
    """One input reader of a TF OD API `TrainEvalPipelineConfig`, in protobuf text format;
    evaluation readers read each example once, in order, as the API's sample configs do.
    The API expands `input_path` with `tf.io.gfile.glob`, so glob characters in the output
    folder's name are escaped there. `extras` are the lines that make its decoder read
    masks and keypoints."""
    quote = lambda path: f'"{text_encoding.CEscape(path, as_utf8=True)}"'  # noqa: E731
    shards = shards_glob(output, split)
    evaluation = ["  shuffle: false", "  num_epochs: 1"] if field == "eval_input_reader" else []
    return [
        f"{field} {{",
        f"  label_map_path: {quote(FileSystems.join(output, LABEL_MAP))}",
        *evaluation,
        *extras,
        "  tf_record_input_reader {",
        f"    input_path: {quote(shards)}",
        "  }",
        "}",
    ]


def _card_warnings(images: dict) -> list[str]:
    """Lines naming images merged from several files and images in several source splits."""
    lines = []
    for key, text in (
        ("merged_from_several_files", "named by several annotation files (their boxes merged)"),
        ("in_several_splits", "in several source splits (written in each: train/eval leakage)"),
    ):
        reported = images.get(key, {})
        if reported.get("count"):
            lines += ["", f"**{reported['count']} images {text}**, for example:", ""]
            lines += [f"- `{name}`" for name in reported["first"]]
    return lines


def _card_lost(manifest: dict) -> list[str]:
    """Lines naming the input, splits and classes that lost most of their objects."""
    lines = []
    for entry in lost_objects(manifest):
        lines += ["", f"**{lost_objects_text(entry)}**"]
    return lines


def _card_duplicates(duplicates: dict) -> list[str]:
    """The card's section on duplicate images: counts, the first pairs, and what to do."""
    lines = ["", "## Duplicate images", ""]
    if not any(
        duplicates[kind][where]["pairs"]
        for kind in DUPLICATE_KINDS
        for where in ("across_splits", "within_split")
    ):
        lines.append("No image has an exact or near-duplicate under another name.")
    else:
        lines += [
            "| | pairs across splits | their images | pairs within a split | their images |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for kind, text in DUPLICATE_KINDS.items():
            across, within = duplicates[kind]["across_splits"], duplicates[kind]["within_split"]
            lines.append(
                f"| {text} | {across['pairs']} | {across['images']} | {within['pairs']} "
                f"| {within['images']} |"
            )
        for where, text in (("across_splits", "across splits"), ("within_split", "within a split")):
            first = [p for kind in DUPLICATE_KINDS for p in duplicates[kind][where]["first"]]
            if first:
                lines += ["", f"First pairs {text}:", ""]
                lines += [f"- `{pair}`" for pair in first]
    near = duplicates["near"]
    lines += [
        "",
        f"Near-duplicates are pairs whose perceptual hashes differ in at most "
        f"{near['max_distance']} of 63 bits, exact copies aside; crops, flips and rotations "
        "are not found. An image the source lists in several splits under one name is "
        "reported as such, not as its own duplicate.",
    ]
    if near["not_hashed"] or near["not_compared"]:
        lines += [
            "",
            f"{near['not_hashed']} images have no perceptual hash (nearly featureless, or not "
            f"decodable by Pillow) and {near['not_compared']} were left out of a crowded "
            "comparison: near-duplicates of these may be missing.",
        ]
    kept = duplicates.get("kept_in_one_split")
    if kept is not None:
        lines += [
            "",
            f"`--duplicates same-split` put {kept['images']} images with duplicates "
            f"({kept['groups']} groups) in the split their content chose; {kept['moved']} of "
            "them moved from the split their name gives.",
        ]
    elif duplicates_across(duplicates):
        lines += [
            "",
            "**A picture in two splits makes evaluation look better than it is**: "
            "`--duplicates same-split` keeps each group of duplicates in one split.",
        ]
    return lines


def dataset_card(manifest: dict, output: str) -> str:
    """A short README for the output folder, with the lines to paste into a pipeline config."""
    lines = [
        "# Object detection dataset",
        "",
        f"Written by odrecords {manifest['odrecords_version']} on {manifest['created']} from "
        f"`{manifest['inputs']['annotations']}` ({manifest['inputs']['format']}) with images "
        f"under `{manifest['inputs']['images']}`.",
        "",
        f"Open `{REPORT_FILE}` to see the dataset: class balance per split, box sizes and "
        f"where boxes fall, outliers, sample images, rejected images and duplicates (the same "
        f"numbers are in `{STATS_FILE}`).",
        "",
        "| split | examples | objects | shards |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, split in manifest["splits"].items():
        lines.append(
            f"| {name} | {split['examples']} | {split['objects']} | {len(split['files'])} |"
        )
    lines += ["", "| class | id | objects |", "| --- | ---: | ---: |"]
    for name, entry in manifest["classes"].items():
        lines.append(f"| {name} | {entry['id']} | {entry['objects']} |")
    if manifest.get("class_ids_changed"):
        lines += ["", f"**{class_ids_changed_text(manifest['class_ids_changed'])}**"]
    errors = manifest["errors"]
    where = f" (see `{ERRORS_FILE}`)" if errors["count"] else ""
    lines += ["", f"## Errors: {errors['count']}{where}", ""]
    for reason, count in errors["by_reason"].items():
        lines.append(f"- {count} × {reason}")
    images, objects = manifest["images"], manifest["objects"]
    lines += [
        "",
        f"Images: {images['referenced']} referenced{copies_text(images)} = {images['written']} "
        f"written + {images['rejected']} rejected. Objects: {objects['read']} read"
        f"{copies_text(objects)} = {objects['written']} written + {objects['rejected']} "
        f"rejected + {objects['dropped']} dropped by the class "
        f"map or the format ({objects['clipped']} clipped to the image).",
        *_card_lost(manifest),
        *_card_warnings(images),
        *_card_duplicates(manifest["duplicates"]),
        *card_lines(manifest.get("changes")),
        *_source_id_lines(images["source_ids"]),
        *_od_api_lines(manifest, output),
        *_tf_vision_lines(manifest, output),
    ]
    return "\n".join(lines)


def shards_glob(output: str, split: str) -> str:
    """The glob of a split's shards, its glob characters escaped: both APIs expand
    `input_path` with `tf.io.gfile.glob`."""
    return _GLOB_SPECIALS.sub(r"\\\1", FileSystems.join(output, split, split)) + ".tfrecord-*"


def _largest_id(manifest: dict) -> int:
    return max((c["id"] for c in manifest["classes"].values()), default=0)


def _source_id_lines(source_ids: dict) -> list[str]:
    """Where the examples' `image/source_id` numbers come from, and the images whose number
    another image of their split had (see `transforms.source_ids`)."""
    origins = [
        f"{count} images {how}"
        for count, how in (
            (source_ids["from_source"], "by the source's own image ids"),
            (source_ids["from_name"], "by a hash of their names"),
        )
        if count
    ]
    lines = ["", f"`image/source_id` numbers {' and '.join(origins) or 'no images'}."]
    reassigned = source_ids["reassigned"]
    if reassigned["count"]:
        lines += [
            "",
            f"**{reassigned['count']} images had the number of another image of their split** "
            "and were numbered by their names instead (the first by name kept it), for example:",
            "",
            *[f"- `{sample}`" for sample in reassigned["first"]],
        ]
    return lines


def _od_api_lines(manifest: dict, output: str) -> list[str]:
    """The TF OD API's input readers, and its `num_classes`: the API one-hot encodes
    `label - 1` with depth `num_classes` (inputs.py), so it is the largest id, which is more
    than the number of classes when ids have gaps."""
    lines = [
        "",
        "## Training with the TF Object Detection API",
        "",
        "Paste into the pipeline config (`TrainEvalPipelineConfig`) and set the model's "
        f"`num_classes` to {_largest_id(manifest)}, the largest id in `{LABEL_MAP}` (the API "
        "one-hot encodes `label - 1`, with depth `num_classes`):",
        "",
        "```",
    ]
    # The decoder reads masks only when asked, and as float lists unless told they are PNGs.
    extras = (
        ["  load_instance_masks: true", "  mask_type: PNG_MASKS"]
        if manifest["options"]["include_masks"]
        else []
    )
    if manifest["keypoints_per_object"]:
        extras.append(f"  num_keypoints: {manifest['keypoints_per_object']}")
    train = _training_split(manifest["splits"])
    for name in manifest["splits"]:
        field = "train_input_reader" if name == train else "eval_input_reader"
        lines += _input_reader(field, output, name, extras)
    return lines + ["```"]


def _tf_vision_lines(manifest: dict, output: str) -> list[str]:
    """TF-Vision's experiment-config lines (RetinaNet, Mask R-CNN): its input paths, and its
    `num_classes`, the largest id + 1, since it one-hot encodes `label` itself with depth
    `num_classes`, 0 being the background. One split evaluates (`validation_data`), the
    first that is not the training split; `annotation_file` is emptied so the COCO
    evaluator takes the ground truth from those records, by their numeric source ids,
    instead of the COCO file a registered experiment names."""
    quote = lambda text: json.dumps(text, ensure_ascii=False)  # noqa: E731 (YAML reads JSON strings)
    train = _training_split(manifest["splits"])
    others = [name for name in manifest["splits"] if name != train]
    config = [
        "task:",
        "  model:",
        f"    num_classes: {_largest_id(manifest) + 1}",
        "  train_data:",
        f"    input_path: {quote(shards_glob(output, train))}",
    ]
    if others:
        config += [
            "  validation_data:",
            f"    input_path: {quote(shards_glob(output, others[0]))}",
            '  annotation_file: ""',
        ]
    lines = [
        "",
        "## Training with TF-Vision (TF Model Garden)",
        "",
        "Paste into the experiment config (`--config_file`, for example of "
        "`retinanet_resnetfpn_coco` or `maskrcnn_resnetfpn_coco`); `num_classes` is "
        f"{_largest_id(manifest) + 1}, the largest id + 1 (TF-Vision one-hot encodes `label` "
        "itself, class 0 being the background):",
        "",
        "```yaml",
        *config,
        "```",
        "",
        "The evaluation reads `image/source_id` as the image id (a number in these records). "
        f"`{LABEL_MAP_CSV}` (`id,name`) is what TF-Vision's label-map decoder reads, to take "
        "ids from the class names instead of `image/object/class/label`: `decoder: {type: "
        f"label_map_decoder, label_map_decoder: {{label_map: "
        f"{quote(FileSystems.join(output, LABEL_MAP_CSV))}}}}}`.",
    ]
    for name in others[1:]:
        lines += ["", f"To evaluate `{name}`: `input_path: {quote(shards_glob(output, name))}`."]
    if "," in output:
        lines += [
            "",
            "**TF-Vision splits `input_path` at commas, and this folder's path has one**: "
            "move the output to a path without one.",
        ]
    missing = [name for name in manifest["classes"] if not csv_writable(name)]
    if missing:
        names = ", ".join(f"`{json.dumps(name, ensure_ascii=False)}`" for name in missing)
        lines += [
            "",
            f"**Left out of `{LABEL_MAP_CSV}`: {names}**: TF-Vision reads the file in text mode, "
            "which drops a carriage return in a name.",
        ]
    return lines + [""]


def class_id_history(label_map: dict[str, int], previous: PreviousBuild | None) -> dict:
    """The manifest's record of class ids across builds: the classes the previous build had
    that this one has not, with their ids (`retired_classes`), and the classes whose id
    changed since (only a given label map can do that; it breaks every checkpoint trained on
    the earlier ids)."""
    earlier = previous.class_ids if previous else {}
    changed = {
        name: {"before": earlier[name], "after": number}
        for name, number in sorted(label_map.items())
        if name in earlier and earlier[name] != number
    }
    return {
        "retired_classes": retired_classes(label_map, earlier),
        "class_ids_changed": changed,
    }


def class_ids_changed_text(changed: dict) -> str:
    """One sentence on classes whose id changed since the previous build."""
    moves = "; ".join(f"{name} {ids['before']} → {ids['after']}" for name, ids in changed.items())
    return (
        f"Class ids changed since the previous build ({moves}): a model trained on an earlier "
        "version reads these classes as others"
    )


# The files a build writes at the output's top (beside the split folders and `index/`).
_TOP_FILES = (ERRORS_FILE, LABEL_MAP, LABEL_MAP_CSV, CARD, STATS_FILE, REPORT_FILE, MANIFEST)


def written_by_create(relative: str) -> bool:
    """Whether `relative` is a file `create` writes into its output: what a later build may
    replace or remove."""
    return (
        is_shard_name(relative)
        or is_index_name(relative)
        or relative in (*_TOP_FILES, REPLACED_MANIFEST)
    )


def check_create_output(output: str) -> None:
    """Raises UnsafeWrite (`transforms.builds.safe_write`), before a build starts, when a link is
    where `create` writes whatever the data: the folders builds are written into, the index
    folder, the pointer and the files at the output's top. (Files in place there are judged
    when a build is published; the split folders, named by the data, too.)"""
    for folder in (BUILDS, VERSIONS, INDEX_DIR):
        check_folder(output, FileSystems.join(output, folder))
    for name in (LATEST, *_TOP_FILES):
        check_place(output, FileSystems.join(output, name), lambda _: True)


def _most_common(by_reason: dict[str, int]) -> str:
    return max(by_reason, key=by_reason.get) if by_reason else "unknown"


def lost_objects(manifest: dict) -> list[dict]:
    """Where most objects were rejected: of the whole input (`where` None), of a split, or of
    a class, each with the objects `rejected`, the objects it had (`of`) and the `most`
    common reason. A split's or class's own count knows only the errors that named it:
    most readers name neither for a record they could not read."""
    errors, objects = manifest["errors"], manifest["objects"]
    found = [
        {
            "where": None,
            "rejected": objects["rejected"],
            "of": objects["read"] + objects["copies_in_other_splits"],
            "most": _most_common(errors.get("objects_by_reason", {})),
        }
    ]
    written = {
        "split": {name: split["objects"] for name, split in manifest["splits"].items()},
        "class": {name: entry["objects"] for name, entry in manifest["classes"].items()},
    }
    for kind, key in (("split", "by_split"), ("class", "by_class")):
        for name, lost in errors.get(key, {}).items():
            found.append(
                {
                    "where": f"{kind} {name!r}" if kind == "class" else f"{kind} {name}",
                    "rejected": lost["objects"],
                    "of": lost["objects"] + written[kind].get(name, 0),
                    "most": _most_common(lost["by_reason"]),
                }
            )
    return [entry for entry in found if entry["of"] and 2 * entry["rejected"] > entry["of"]]


def lost_objects_text(entry: dict) -> str:
    """`split val: 9 of 12 objects were rejected (most: read: ...)`."""
    where = f"{entry['where']}: " if entry["where"] else ""
    return (
        f"{where}{entry['rejected']} of {entry['of']} objects were rejected (most: {entry['most']})"
    )


def quality(manifest: dict, max_error_rate: float | None) -> dict:
    """Whether the build may be published, and why not: nothing was written (an empty
    dataset must never replace a good one), or a larger share of the input was rejected than
    `--max-error-rate` allows. The share is the largest of the images' (rejected images and
    annotation records that could not be read, over all of them), the objects', and that of
    a split or class that lost most of its objects (`lost_objects`): a class whose every
    object was rejected is as unusable as a dataset whose every image was."""
    images, objects = manifest["images"], manifest["objects"]
    unreadable = manifest["errors"]["by_stage"].get(STAGE_READ, {}).get("count", 0)
    image_input = images["referenced"] + images["copies_in_other_splits"] + unreadable
    object_input = objects["read"] + objects["copies_in_other_splits"]
    rate = max(
        (images["rejected"] + unreadable) / image_input if image_input else 0.0,
        objects["rejected"] / object_input if object_input else 0.0,
    )
    what = "of the input was rejected"
    for entry in lost_objects(manifest):
        if entry["where"] and entry["rejected"] / entry["of"] > rate:
            rate = entry["rejected"] / entry["of"]
            what = f"of the objects of {entry['where']} were rejected"
    reasons = []
    if not images["written"]:
        reasons.append("no example was written")
    if max_error_rate is not None and rate > max_error_rate:
        reasons.append(f"{rate:.2%} {what}, more than --max-error-rate {max_error_rate:g}")
    return {
        "error_rate": round(rate, 6),
        "max_error_rate": max_error_rate,
        "published": not reasons,
        "not_published_because": reasons,
    }


def strict_gate(manifest: dict, folder: str, limits: Thresholds) -> dict:
    """What `--strict` adds to the build's gate: the checks of `odrecords validate`
    (`transforms.builds.checks`), made on the build in `folder` before it is published, and
    the failed ones as reasons not to publish it."""
    findings = check(manifest, folder, limits)
    return {
        "checks": [finding.entry() for finding in findings],
        "not_published_because": [
            f"--strict: {finding.text()}" for finding in findings if finding.failed
        ],
    }


class WriteReport(beam.DoFn):
    """Once every shard and error is in the build folder: writes label maps, dataset card and
    manifest there, and publishes the build if it passes the quality gate (see
    `transforms.builds.layout` and `transforms.builds.publish`), then removes earlier builds'
    leftovers.
    The manifest lists every file with its size and sha256, for later runs to replace or
    remove only what this one wrote."""

    def __init__(
        self,
        layout: Layout,
        parts: str,
        settings: dict,
        max_error_rate: float | None,
        previous: PreviousBuild | None,
        loader: ImageLoader,
        reuse: dict | None = None,
        strict: Thresholds | None = None,
    ):
        """`strict`: the thresholds of the checks a build must pass to be published
        (`--strict`), or None to publish it without them."""
        self._layout = layout
        self._loader = loader
        self._parts = parts
        self._settings = settings
        self._max_error_rate = max_error_rate
        self._previous = previous
        self._reuse = reuse
        self._strict = strict

    def process(
        self,
        _,
        counts: dict,
        shard_digests: list[tuple[str, dict]],
        label_map: dict[str, int],
        renumbered: dict[str, int],
        error_files: list[str],
        report: DatasetStats,
        rejected: list[Rejected],
    ) -> Iterator[dict]:
        """`shard_digests` are (relative path, {size, sha256}) of the shards and index files
        written; `error_files` is unused but makes this step wait until the errors are
        written; `report`, the statistics of the shards and `rejected`, the first rejected
        images, for the dataset report (`transforms.report.build`)."""
        layout = self._layout
        written = dict(shard_digests)
        manifest = build_manifest(
            counts,
            sorted(written),
            label_map,
            renumbered,
            self._settings,
            previous_summary(self._previous) if self._previous else None,
            self._reuse,
        )
        manifest |= class_id_history(label_map, self._previous)
        if manifest["errors"]["files"]:
            written[ERRORS_FILE] = digest_of_file(join(layout.build, ERRORS_FILE))
        for name, text in (
            (LABEL_MAP, format_label_map(label_map)),
            (LABEL_MAP_CSV, format_label_map_csv(label_map)),
            (CARD, dataset_card(manifest, layout.published)),
            *report_texts(
                statistics(report, manifest, counts, rejected), layout.build, self._loader
            ).items(),
        ):
            written[name] = write_text(layout.output, join(layout.build, name), text, new_folder)
        if FileSystems.exists(self._parts):
            delete_path(self._parts)
        build = {"id": layout.build_id, "versions": layout.versions}
        written = dict(sorted(written.items()))
        # After stats.json and errors.jsonl, which the checks of --strict read.
        gate = self._gate({**manifest, "written": written})
        manifest = with_checksum({**manifest, "build": build | gate, "written": written})
        # Last in the build folder: a build folder with a manifest is complete.
        write_json(layout.output, join(layout.build, MANIFEST), manifest, new_folder)
        if not manifest["build"]["published"]:
            yield manifest
            return
        if layout.versions:
            write_pointer(layout.output, layout.build_id)
        else:
            manifest = publish_flat(layout, manifest, written_by_create)
        remove_earlier_builds(layout, written_by_create)
        yield manifest

    def _gate(self, manifest: dict) -> dict:
        """Whether the build may be published (`quality`, and with `--strict` its checks,
        `strict_gate`), and, without versions, whether its files can be moved to the output's
        top: never through a link, nor over a file the replaced output did not write
        (`check_publishable`)."""
        gate = quality(manifest, self._max_error_rate)
        if self._strict is not None:
            strict = strict_gate(manifest, self._layout.build, self._strict)
            reasons = gate["not_published_because"] + strict["not_published_because"]
            gate |= strict | {"published": not reasons, "not_published_because": reasons}
        if gate["published"] and not self._layout.versions:
            try:
                check_publishable(self._layout, manifest)
            except UnsafeWrite as error:
                why = f"{error} (in {self._layout.output})"
                return gate | {"published": False, "not_published_because": [why]}
        return gate


def _error_line(error: ErrorRecord) -> tuple[tuple[str, ...], str]:
    """The error's place in the errors file (by source, then reason, then the rest) and its
    JSON line; counts it by stage and reason for the runner's UI."""
    Metrics.counter("odrecords", f"errors_{error.stage}").inc()
    Metrics.counter("odrecords", f"error: {error.stage}: {reason_kind(error.reason)[:60]}").inc()
    line = error.to_json()
    order = (line["source"], line["reason"], line["image"] or "", line["stage"])
    return order, json.dumps(line, ensure_ascii=False)


def _write_lines(
    lines: list[tuple[tuple[str, ...], str]], root: str, path: str, ours: Ours
) -> Iterator[str]:
    """Writes the (order, line) `lines`, sorted, one a line into `path` inside `root` (by the
    rule of `transforms.builds.safe_write`), and yields its path; writes nothing when there are
    none (Beam's S3 filesystem cannot write an empty file)."""
    if not lines:
        return
    write_file(root, path, (line.encode("utf-8") + b"\n" for _, line in sorted(lines)), ours)
    yield path


def write_errors(errors: beam.PCollection, root: str, path: str, ours: Ours) -> beam.PCollection:
    """The errors output: one JSON object per line in `path` (`errors.jsonl` of a build or of
    an export, inside `root`), sorted by source, then reason, so that the file does not depend
    on the order in which workers found the errors (a rebuild that reuses examples finds them
    in another order than a full build, and writes the same bytes). The lines are gathered in
    one worker's memory to be sorted: a few hundred bytes per rejected image, box or annotation
    record."""
    return (
        errors
        | "ErrorToJson" >> beam.Map(_error_line)
        | "GatherErrorLines" >> beam.combiners.ToList()
        | "WriteErrorLines" >> beam.FlatMap(_write_lines, root, path, ours)
    )
