"""Reads odrecords outputs with TF-Vision's and the TF OD API's own code, as their trainers
and evaluators do, and prints what they made of them as JSON.

Run by `tests/test_tfvision.py` with the Python of the TF-Vision virtualenv (`.ci/run`
makes `.venv-tfvision`), which has its own TensorFlow and protobuf; odrecords is not
installed there, so this file imports nothing of it.

    python tfvision_check.py tf-vision OUT [OUT ...]
    python tfvision_check.py od-api NUM_KEYPOINTS OUT [OUT ...]

`tf-vision`: per output, the dataset card's experiment-config lines applied to TF-Vision's
registered RetinaNet and Mask R-CNN experiments; every record through `TfExampleDecoder`
(with masks) and `TfExampleDecoderLabelMap` (with `label_map.csv`), then the RetinaNet and
Mask R-CNN parsers in training and evaluation mode (no `regenerate_source_id`); the COCO
evaluator fed the evaluation ground truth as predictions; and the annotation file Mask
R-CNN's evaluation generates from the records. `od-api`: every record through the OD API's
`TfExampleDecoder` with `num_keypoints`, its masks and `label_map.pbtxt`. The OD API's
generated protobuf modules predate protobuf 4; the caller runs this with
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python, as protobuf's error for such modules advises.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

OUTPUT_SIZE = [128, 128]


def _manifest(output: str) -> dict:
    with open(os.path.join(output, "manifest.json"), encoding="utf-8") as handle:
        return json.load(handle)


def _records(output: str) -> list[tuple[str, bytes]]:
    """(split, serialized example) of every record, in the manifest's order."""
    found = []
    for split, entry in _manifest(output)["splits"].items():
        files = [os.path.join(output, name) for name in entry["files"]]
        found += [(split, record.numpy()) for record in tf.data.TFRecordDataset(files)]
    return found


def _card_config(output: str) -> str:
    card = open(os.path.join(output, "README.md"), encoding="utf-8").read()
    return card.split("## Training with TF-Vision")[1].split("```yaml")[1].split("```")[0]


def _experiments(output: str) -> dict:
    """The card's lines applied to TF-Vision's registered experiments, strictly (an unknown
    key fails), and the files their input paths match, as TF-Vision's input reader does."""
    import official.vision.configs.maskrcnn  # noqa: F401 (registers the experiments)
    import official.vision.configs.retinanet  # noqa: F401
    from official.core import exp_factory, input_reader
    from official.modeling.hyperparams import params_dict

    found = {}
    for name in ("retinanet_resnetfpn_coco", "maskrcnn_resnetfpn_coco"):
        config = exp_factory.get_exp_config(name)
        params_dict.override_params_dict(config, _card_config(output), is_strict=True)
        config.validate()
        task = config.task
        found[name] = {
            "num_classes": task.model.num_classes,
            "annotation_file": task.annotation_file,
            "train": sorted(input_reader.match_files(task.train_data.input_path)),
            "validation": sorted(input_reader.match_files(task.validation_data.input_path))
            if task.validation_data.input_path
            else [],
        }
    return found


def _perfect_predictions(groundtruths: dict, image_info: np.ndarray) -> dict:
    """The evaluation ground truth as a model's predictions (in the resized image, as
    models predict), so a correct evaluation of them gives an AP of 1."""
    scale = np.tile(image_info[2:3, :], (1, 2))
    count = groundtruths["boxes"].shape[0]
    real = np.arange(count) < groundtruths["num_detections"]
    return {
        "source_id": groundtruths["source_id"][None],
        "image_info": image_info[None],
        "num_detections": np.array([count]),
        "detection_boxes": (groundtruths["boxes"] * scale)[None],
        "detection_classes": groundtruths["classes"][None],
        "detection_scores": real.astype(np.float32)[None],
    }


def check_tf_vision(outputs: list[str]) -> dict:
    from official.vision.dataloaders import (
        maskrcnn_input,
        retinanet_input,
        tf_example_decoder,
        tf_example_label_map_decoder,
    )
    from official.vision.evaluation import coco_evaluator, coco_utils

    decoder = tf_example_decoder.TfExampleDecoder(include_mask=True)
    results = {}
    for output in outputs:
        # Mask R-CNN trains on masks when the records hold them, else as Faster R-CNN.
        masks = _manifest(output)["options"]["include_masks"]
        parsers = {
            "retinanet": retinanet_input.Parser(
                output_size=OUTPUT_SIZE,
                min_level=3,
                max_level=7,
                num_scales=3,
                aspect_ratios=[0.5, 1.0, 2.0],
                anchor_size=4.0,
                dtype="float32",
            ),
            "maskrcnn": maskrcnn_input.Parser(
                output_size=OUTPUT_SIZE,
                min_level=2,
                max_level=6,
                num_scales=1,
                aspect_ratios=[0.5, 1.0, 2.0],
                anchor_size=8.0,
                include_mask=masks,
                mask_crop_size=28,
            ),
        }
        by_text = tf_example_label_map_decoder.TfExampleDecoderLabelMap(
            label_map=os.path.join(output, "label_map.csv"), include_mask=True
        )
        evaluator = coco_evaluator.COCOEvaluator(annotation_file=None, include_mask=False)
        records = []
        for split, serialized in _records(output):
            decoded = decoder.decode(tf.constant(serialized))
            from_text = by_text.decode(tf.constant(serialized))
            record = {
                "split": split,
                "source_id": decoded["source_id"].numpy().decode(),
                "boxes": int(decoded["groundtruth_boxes"].shape[0]),
                "masks": list(decoded["groundtruth_instance_masks"].shape),
                "classes": decoded["groundtruth_classes"].numpy().tolist(),
                "classes_from_text": from_text["groundtruth_classes"].numpy().tolist(),
            }
            for name, parser in parsers.items():
                image, _ = parser.parse_fn(is_training=True)(decoded)
                record[f"{name}_train_image"] = list(image.shape)
                _, labels = parser.parse_fn(is_training=False)(decoded)
                record[f"{name}_eval_source_id"] = int(labels["groundtruths"]["source_id"])
            # Mask R-CNN's ground truth: RetinaNet's parser gives `num_detections` the shape
            # [1], which the evaluator's int() refuses under NumPy 2 (whatever the records).
            # Boxes only: its cropped masks are for its loss; its evaluation of masks reads
            # the annotation file generated below.
            groundtruths = {k: v.numpy() for k, v in labels["groundtruths"].items() if k != "masks"}
            predictions = _perfect_predictions(groundtruths, labels["image_info"].numpy())
            evaluator.update_state(  # Batches of one, as tensors, as the task passes them.
                {k: tf.constant(v[None]) for k, v in groundtruths.items()},
                {k: tf.constant(v) for k, v in predictions.items()},
            )
            records.append(record)
        metrics = evaluator.result()
        generated = {}
        for split, entry in _manifest(output)["splits"].items():
            if not entry["files"]:
                continue
            path = os.path.join(tempfile.mkdtemp(), "annotations.json")
            pattern = os.path.join(output, split, f"{split}.tfrecord-*")
            coco_utils.scan_and_generator_annotation_file(
                pattern, "tfrecord", entry["examples"], masks, path
            )
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
            generated[split] = {
                "image_ids": sorted(image["id"] for image in document["images"]),
                "annotations": len(document["annotations"]),
                "with_masks": sum("segmentation" in a for a in document["annotations"]),
            }
        results[output] = {
            "records": records,
            "experiments": _experiments(output),
            "ap": float(metrics["AP"]),
            "ap50": float(metrics["AP50"]),
            "generated_annotations": generated,
        }
    return results


def check_od_api(num_keypoints: int, outputs: list[str]) -> dict:
    from tensorflow.python.ops import cond, control_flow_case, control_flow_ops

    # tf_slim 1.1, the last, decodes images with `control_flow_ops.case` and `.cond`, which
    # TensorFlow 2.13 moved to modules of their own: the old names get the same functions.
    control_flow_ops.case = control_flow_case.case
    control_flow_ops.cond = cond.cond
    from object_detection.core import standard_fields
    from object_detection.data_decoders import tf_example_decoder
    from object_detection.protos import input_reader_pb2

    fields = standard_fields.InputDataFields
    results = {}
    for output in outputs:
        decoder = tf_example_decoder.TfExampleDecoder(
            load_instance_masks=True,
            instance_mask_type=input_reader_pb2.PNG_MASKS,
            num_keypoints=num_keypoints,
            label_map_proto_file=os.path.join(output, "label_map.pbtxt"),
        )
        serialized = [record for _, record in _records(output)]
        decoded = tf.data.Dataset.from_tensor_slices(serialized).map(decoder.decode)
        results[output] = [
            {
                "boxes": list(tensors[fields.groundtruth_boxes].shape),
                "classes": tensors[fields.groundtruth_classes].numpy().tolist(),
                "masks": list(tensors[fields.groundtruth_instance_masks].shape),
                "keypoints": list(tensors[fields.groundtruth_keypoints].shape),
                "visibilities": list(tensors[fields.groundtruth_keypoint_visibilities].shape),
                "visible": int(tensors[fields.groundtruth_keypoint_visibilities].numpy().sum()),
                "source_id": tensors[fields.source_id].numpy().decode(),
            }
            for tensors in decoded
        ]
    return results


def main(argv: list[str]) -> None:
    with contextlib.redirect_stdout(sys.stderr):  # pycocotools prints its tables.
        if argv[0] == "tf-vision":
            results = check_tf_vision(argv[1:])
        else:
            results = check_od_api(int(argv[1]), argv[2:])
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
