"""ExampleFacts of a record of any TFRecord file, read back as `odrecords export` reads it."""

from __future__ import annotations

from transforms.export.decode import DecodedRecord
from transforms.report.facts import ExampleFacts, Location, ObjectFacts


def facts_of_record(record: DecodedRecord, location: Location) -> ExampleFacts:
    """The facts of a decoded record (`transforms.export.decode`), whose boxes are already in
    pixels of its image. Its name is `image/filename`, else its source id, else where it
    lies; whether its pixels were turned is not known (False)."""
    annotation = record.image.annotation
    return ExampleFacts(
        split=annotation.split or "",
        image=annotation.image or record.source_id or annotation.sources[0],
        width=annotation.width,
        height=annotation.height,
        objects=tuple(
            ObjectFacts(box.label, box.xmin, box.ymin, box.xmax, box.ymax)
            for box in annotation.boxes
        ),
        location=location,
    )
