"""The VOC and TF OD CSV readers, on small files written by the tests."""

import io

from apache_beam.testing.util import assert_that, equal_to
from conftest import local_pipeline

from transforms.readers import formats
from transforms.readers.base import ReaderOptions
from transforms.readers.read_annotations import ReadAnnotations
from transforms.readers.tf_csv import parse_tf_csv
from transforms.readers.voc import parse_voc
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation

VOC = b"""<annotation>
  <filename>dir/a.jpg</filename>
  <size><width>100</width><height>50</height></size>
  <object><name>cat</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>2.5</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
  <object><name>dog</name><bndbox><xmin>x</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox>
  </object>
  <object><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object>
</annotation>"""


def test_voc_reads_boxes_and_rejects_broken_objects_alone():
    records = list(parse_voc(VOC, "a.xml"))
    errors = [r for r in records if isinstance(r, ErrorRecord)]
    (annotation,) = [r for r in records if isinstance(r, ImageAnnotation)]
    assert annotation == ImageAnnotation(
        image="dir/a.jpg",
        sources=("a.xml",),
        boxes=(Box("cat", 1, 2.5, 30, 40, "a.xml#object[1]", False, True, "Left"),),
        width=100,
        height=50,
    )
    assert [(e.source, e.image, e.stage, e.objects) for e in errors] == [
        ("a.xml#object[2]", "dir/a.jpg", STAGE_READ, 1),
        ("a.xml#object[3]", "dir/a.jpg", STAGE_READ, 1),
    ]
    assert "<xmin> of object 'dog' is not a number: 'x'" in errors[0].reason
    assert "no <name>" in errors[1].reason


def test_voc_malformed_xml_is_one_error():
    (error,) = parse_voc(b"<annotation><filename>a.jpg</filename>", "bad.xml")
    assert (error.source, error.image, error.stage) == ("bad.xml", None, STAGE_READ)
    assert error.reason.startswith("malformed XML")


def test_voc_resolves_no_entities(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xml = f"""<?xml version="1.0"?>
<!DOCTYPE annotation [
  <!ENTITY xxe SYSTEM "file://{secret}">
  <!ENTITY lol "lollollollollollollollollollol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
<annotation><filename>a.jpg</filename>
  <object><name>&xxe;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>
  </bndbox></object>
  <object><name>&lol2;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>
  </bndbox></object>
</annotation>""".encode()
    records = list(parse_voc(xml, "evil.xml"))
    assert "TOP-SECRET" not in repr(records)
    assert "lollol" not in repr(records)
    assert all(isinstance(r, ErrorRecord) for r in records[:2])
    assert records[-1].boxes == ()


def test_voc_rejects_paths_outside_the_images_root():
    for name in ("../../etc/passwd", "/etc/passwd", "C:\\x.jpg", "gs://bucket/x.jpg", "a/../../b"):
        xml = f"<annotation><filename>{name}</filename><object/></annotation>".encode()
        (error,) = parse_voc(xml, "x.xml")
        assert error.stage == STAGE_READ and error.objects == 1, name


CSV = (
    "filename,width,height,class,xmin,ymin,xmax,ymax\n"
    "a.jpg,100,50,cat,1,2,30,40\n"
    "a.jpg,100,50,dog,1,2,3,abc\n"
    "b.jpg,10,10,,,,,\n"
    ",10,10,cat,1,2,3,4\n"
    "c.jpg,10,10\n"
    "d.jpg,10,10,,1,2,3,4\n"
)


def test_csv_rows_become_mentions_and_bad_rows_errors():
    records = list(parse_tf_csv(io.BytesIO(CSV.encode()), "l.csv"))
    errors = [(r.source, r.image, r.objects) for r in records if isinstance(r, ErrorRecord)]
    mentions = [r for r in records if isinstance(r, ImageAnnotation)]
    assert errors == [
        ("l.csv:3", "a.jpg", 1),
        ("l.csv:5", None, 1),
        ("l.csv:6", None, 0),
        ("l.csv:7", "d.jpg", 1),
    ]
    assert [(m.image, len(m.boxes), m.sources) for m in mentions] == [
        ("a.jpg", 1, ("l.csv:2",)),
        ("a.jpg", 0, ("l.csv:3",)),
        ("b.jpg", 0, ("l.csv:4",)),
        ("d.jpg", 0, ("l.csv:7",)),
    ]
    assert mentions[0].boxes[0] == Box("cat", 1, 2, 30, 40, "l.csv:2")


def test_csv_without_required_columns_is_one_error():
    (error,) = parse_tf_csv(io.BytesIO(b"name,x\na,1\n"), "l.csv")
    assert "missing CSV columns: filename, class" in error.reason


def test_csv_with_bom_and_non_ascii_class_names():
    data = "\ufefffilename,class,xmin,ymin,xmax,ymax\nä.jpg,Waschbär ,1,2,3,4\n".encode()
    (mention,) = parse_tf_csv(io.BytesIO(data), "l.csv")
    assert (mention.image, mention.boxes[0].label) == ("ä.jpg", "Waschbär")


def test_csv_rows_that_are_not_utf8_are_rejected_one_by_one():
    data = b"filename,class,xmin,ymin,xmax,ymax\na.jpg,cat,1,2,3,4\nb\xff.jpg,cat,1,2,3,4\n"
    data += b"c.jpg,cat,1,2,3,4\n"
    records = list(parse_tf_csv(io.BytesIO(data), "l.csv"))
    assert [getattr(r, "image", None) for r in records] == ["a.jpg", None, "c.jpg"]
    assert (records[1].source, records[1].reason) == (
        "l.csv:3",
        "row holds bytes that are not UTF-8 text",
    )


def test_csv_row_with_a_nul_byte_in_the_name_is_rejected():
    data = b"filename,class,xmin,ymin,xmax,ymax\na.jpg,cat,1,2,3,4\nb\x00.jpg,cat,1,2,3,4\n"
    records = list(parse_tf_csv(io.BytesIO(data), "l.csv"))
    assert records[0].image == "a.jpg"
    assert (records[1].source, records[1].objects) == ("l.csv:3", 1)
    assert "NUL" in records[1].reason


def test_read_annotations_transform_routes_errors(tmp_path):
    (tmp_path / "a.xml").write_bytes(VOC)
    (tmp_path / "b.xml").write_bytes(b"not xml at all")
    with local_pipeline() as pipeline:
        result = pipeline | ReadAnnotations(
            formats()["voc"], str(tmp_path / "*.xml"), ReaderOptions()
        )
        images = result["annotations"] | "Images" >> __import__("apache_beam").Map(
            lambda a: a.image
        )
        stages = result["errors"] | "Sources" >> __import__("apache_beam").Map(
            lambda e: e.source.rsplit("/", 1)[-1]
        )
        assert_that(images, equal_to(["dir/a.jpg"]), label="images")
        assert_that(
            stages, equal_to(["a.xml#object[2]", "a.xml#object[3]", "b.xml"]), label="errors"
        )
