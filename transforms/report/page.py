"""The dataset report page: stats.json and the thumbnails of its sample as one HTML file.

The file stands alone, so it can be mailed, attached to a build or opened from a bucket: CSS
inline, charts as inline SVG, heatmaps and thumbnails as data: URIs, no script, and a Content
Security Policy that lets it load nothing else. Every text from the data (file names, class
names, reasons, inputs) is escaped: a dataset is untrusted input. The page stays a few
megabytes at any scale: the statistics are bounded by their schema, and the per-class panels
are capped here, which the page says."""

from __future__ import annotations

import base64
import html
import io
import itertools
import math

from PIL import Image

from transforms.drawing import class_color
from transforms.records import utf8_safe

# Per-class heatmaps and contact sheets beyond this many classes are left out (the page says
# so): at 600 classes they would be most of the page and no one would read them.
MAX_CLASS_PANELS = 80
# Tiles per class sheet: all the sample holds (8) for a few classes, fewer for many.
_FEW_CLASSES = 24
CLASS_TILES_FEW, CLASS_TILES_MANY = 8, 4
_MAX_PAIRS = 50

_HISTOGRAMS = [
    ("objects_per_image", "Objects per image", "images"),
    ("box_width_px", "Box width (px)", "boxes"),
    ("box_height_px", "Box height (px)", "boxes"),
    ("aspect_ratio", "Box aspect ratio (width / height)", "boxes"),
    ("image_width_px", "Image width (px)", "images"),
    ("image_height_px", "Image height (px)", "images"),
]
_OUTLIERS = [
    ("tiny", "Tiny boxes", "Boxes of less than 8 × 8 px in area"),
    ("near_full_frame", "Boxes that fill the frame", "Boxes of 95% of the image or more"),
    (
        "unusual_size",
        "Unusual sizes for their class",
        "Boxes whose size (log scale) is more than 3 standard deviations from their class's",
    ),
]
# Light to dark blue: an empty cell is almost white, the busiest the darkest.
_HEAT = [(247, 251, 255), (198, 219, 239), (107, 174, 214), (33, 113, 181), (8, 48, 107)]

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--accent:#3b6fd4;
--bad:#b42318;--badbg:#fdecea;--warn:#8a5a00;--warnbg:#fff5d6}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#fff;
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#1f2a44;color:#fff;padding:22px 32px 16px}
header h1{margin:0 0 6px;font-size:22px;font-weight:600}
header .inputs{margin:0;padding:0;list-style:none;color:#d6def0;font-size:13px}
header .inputs li{overflow-wrap:anywhere}
nav{margin-top:12px}
nav a{color:#aac4ff;margin-right:16px;text-decoration:none;font-size:13px}
main{max-width:1320px;margin:0 auto;padding:4px 32px 56px}
section{margin-top:34px}
h2{font-size:19px;font-weight:600;margin:0 0 12px;padding-bottom:6px;
border-bottom:1px solid var(--line)}
h3{font-size:15px;font-weight:600;margin:22px 0 8px}
h4{font-size:13px;font-weight:600;margin:12px 0 6px;color:var(--muted)}
.card h4{margin-top:0}
#classes td:nth-child(3n+2),#classes th:nth-child(3n+2){border-left:1px solid var(--line)}
p.note{color:var(--muted);margin:4px 0 10px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:right;vertical-align:top}
th{font-weight:600;background:var(--soft)}
th:first-child,td:first-child,.text{text-align:left}
td.text{overflow-wrap:anywhere;max-width:420px}
tbody tr:hover{background:var(--soft)}
.cards{display:flex;flex-wrap:wrap;gap:16px}
.card{border:1px solid var(--line);border-radius:8px;padding:4px 14px 10px;background:#fff}
.splits{display:flex;flex-wrap:wrap;gap:10px 18px}
.card h3{margin:10px 0 6px}
.flag{display:inline-block;font-size:11px;line-height:16px;padding:0 7px;border-radius:9px;
margin-left:6px;white-space:nowrap;font-weight:500}
.flag.bad{background:var(--badbg);color:var(--bad)}
.flag.warn{background:var(--warnbg);color:var(--warn)}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:7px}
.share{display:inline-block;width:54px;height:7px;margin-left:6px;background:var(--soft);
border-radius:4px;overflow:hidden;vertical-align:middle}
.share i{display:block;height:100%;background:var(--accent)}
svg.chart{display:block;font-size:11px;fill:var(--fg)}
svg.chart rect{fill:var(--accent)}
svg.chart .n{fill:var(--muted)}
svg.chart line{stroke:var(--muted)}
.heats{display:flex;flex-wrap:wrap;gap:14px}
.heats figure{margin:0}
.heats img{display:block;image-rendering:pixelated;border:1px solid var(--line)}
.heats figcaption{font-size:12px;color:var(--muted);max-width:160px;overflow-wrap:anywhere}
.sheet{display:flex;flex-wrap:wrap;gap:12px}
.tile{margin:0;width:200px}
.tile img,.nopic{display:block;width:200px;height:200px;border-radius:4px}
.nopic{background:#ddd;color:#555;font-size:12px;padding:78px 16px;text-align:center}
.tile figcaption{font-size:12px;color:var(--muted);margin-top:3px;overflow-wrap:anywhere}
.small .tile{width:120px}
.small .tile img,.small .nopic{width:120px;height:120px}
.small .nopic{padding:40px 8px}
.pair{display:flex;gap:12px;align-items:flex-start}
.pairs{display:flex;flex-wrap:wrap;gap:18px}
.pairs .card{display:flex;flex-direction:column;gap:6px}
ul.names{columns:3;padding-left:18px;margin:6px 0}
ul.names li{overflow-wrap:anywhere}
"""


# The page's first line names what wrote it, so a later report may replace it and nothing else.
GENERATOR = '<meta name="generator" content="odrecords report">'


def written_page(start: bytes) -> bool:
    """Whether a file beginning with `start` is a page `render_page` wrote (a mark that
    recognises, not authenticates)."""
    return GENERATOR.encode() in start.split(b"\n", 2)[1] if start.count(b"\n") >= 1 else False


def _t(value: object) -> str:
    """Text from the data, escaped for an element or a quoted attribute, and what UTF-8 cannot
    encode (lone surrogates of a file name that is not UTF-8) shown as escapes."""
    return html.escape(utf8_safe(str(value)), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _flag(text: str, kind: str) -> str:
    return f'<span class="flag {kind}">{_t(text)}</span>'


def _table(head: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    """A table of already escaped cells; the first `text_columns` cells are left-aligned text."""
    header = "".join(
        f'<th class="text">{cell}</th>' if index < text_columns else f"<th>{cell}</th>"
        for index, cell in enumerate(head)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="text">{cell}</td>' if index < text_columns else f"<td>{cell}</td>"
            for index, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _bar_chart(rows: list[tuple[str, int]], unit: str) -> str:
    """Horizontal bars, one per (label, count), with the counts written beside them and a count
    axis titled `unit`."""
    # Labels are right-aligned before the bars: room for the longest, about 7 px a character.
    label_width = max([84, *(12 + 7 * len(label) for label, _ in rows)])
    bar_width, row_height, top = 130, 17, 4
    largest = max((count for _, count in rows), default=0)
    axis = top + row_height * len(rows) + 2
    width, height = label_width + bar_width + 48, axis + 30
    parts = []
    for index, (label, count) in enumerate(rows):
        y = top + index * row_height
        length = bar_width * count / largest if largest else 0
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 12}" text-anchor="end">{_t(label)}</text>'
            f'<rect x="{label_width}" y="{y + 2}" width="{length:.1f}" height="{row_height - 4}"'
            f' rx="2"/><text class="n" x="{label_width + length + 4:.1f}" y="{y + 12}">'
            f"{_n(count)}</text>"
        )
    parts.append(
        f'<line x1="{label_width}" y1="{axis}" x2="{label_width + bar_width}" y2="{axis}"/>'
        f'<text class="n" x="{label_width}" y="{axis + 12}" text-anchor="middle">0</text>'
        f'<text class="n" x="{label_width + bar_width}" y="{axis + 12}" text-anchor="middle">'
        f"{_n(largest)}</text>"
        f'<text x="{label_width + bar_width / 2}" y="{axis + 26}" text-anchor="middle">'
        f"{_t(unit)}</text>"
    )
    return (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label="{_t(unit)}">{"".join(parts)}</svg>'
    )


def _edge(value: float) -> str:
    return f"{value:g}"


def _bins(edges: list[float], discrete: bool) -> list[str]:
    """Labels of the bins [edges[i], edges[i+1]) and the last, open one. Counts (`discrete`)
    are named by their inclusive range, measures by their edges."""
    labels = []
    for low, high in itertools.pairwise(edges):
        if discrete:
            labels.append(_edge(low) if high - low == 1 else f"{_edge(low)}–{_edge(high - 1)}")
        else:
            labels.append(f"{_edge(low)}–{_edge(high)}")
    return labels + [f"≥ {_edge(edges[-1])}"]


def _per_split(stats: dict, title: str, draw) -> str:
    """A card titled `title` with one chart per split side by side, each drawn by
    `draw(split statistics)`."""
    charts = "".join(
        f"<div><h4>{_t(split)}</h4>{draw(values)}</div>"
        for split, values in stats["splits"].items()
    )
    return f'<div class="card"><h3>{_t(title)}</h3><div class="splits">{charts}</div></div>'


def _png(grid: list[list[int]]) -> str:
    """A heatmap of `grid` as a PNG data: URI, one pixel per cell, on a square-root scale so
    that sparse cells still show beside the busiest."""
    rows, columns = len(grid), len(grid[0]) if grid else 0
    largest = max((max(row) for row in grid), default=0)
    image = Image.new("RGB", (max(columns, 1), max(rows, 1)), _HEAT[0])
    for y, row in enumerate(grid):
        for x, value in enumerate(row):
            if value > 0 and largest > 0:
                position = math.sqrt(value / largest) * (len(_HEAT) - 1)
                low = min(int(position), len(_HEAT) - 2)
                weight = position - low
                image.putpixel(
                    (x, y),
                    tuple(
                        round(a + (b - a) * weight)
                        for a, b in zip(_HEAT[low], _HEAT[low + 1], strict=True)
                    ),
                )
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _heatmap(grid: list[list[int]], caption: str, size: int = 160) -> str:
    largest = max((max(row) for row in grid), default=0)
    scale = f"max {_n(largest)} per cell" if largest else "no boxes"
    return (
        f'<figure><img src="{_png(grid)}" width="{size}" height="{size}" alt="{_t(caption)}">'
        f"<figcaption>{_t(caption)} · {scale}</figcaption></figure>"
    )


def _tile(thumbnails: dict[str, bytes], split: str, image: str) -> str:
    """A thumbnail with the file name under it; a grey square when there is no picture."""
    picture = thumbnails.get(f"{split}/{image}")
    if picture is None:
        drawn = '<div class="nopic">no picture</div>'
    else:
        uri = "data:image/jpeg;base64," + base64.b64encode(picture).decode("ascii")
        drawn = f'<img src="{uri}" alt="{_t(image)}">'
    return f'<figure class="tile">{drawn}<figcaption>{_t(image)}</figcaption></figure>'


def _header(stats: dict) -> str:
    source = stats.get("source", {})
    kind = {"create": "Written by odrecords create from", "records": "Read from"}.get(
        source.get("kind"), "From"
    )
    inputs = "".join(f"<li>{_t(item)}</li>" for item in source.get("inputs", [])) or "<li>-</li>"
    links = [
        ("counts", "Counts"),
        ("classes", "Classes"),
        ("histograms", "Histograms"),
        ("placement", "Box placement"),
        ("outliers", "Outliers"),
        ("sheets", "Examples"),
        ("rejected", "Rejected"),
        ("duplicates", "Duplicates"),
        ("turned", "Turned"),
    ]
    nav = "".join(f'<a href="#{anchor}">{name}</a>' for anchor, name in links)
    return (
        f'<header><h1>Dataset report</h1><p class="inputs">{kind}:</p>'
        f'<ul class="inputs">{inputs}</ul><nav>{nav}</nav></header>'
    )


def _counts(stats: dict) -> str:
    splits = stats["splits"]
    metrics = [
        ("images", "Images"),
        ("objects", "Objects"),
        ("negatives", "Negatives (no object)"),
        ("rejected_images", "Rejected images"),
        ("rejected_objects", "Rejected objects"),
        ("duplicates", "Images in a duplicate pair"),
    ]
    rows = [
        [name]
        + [_n(values.get(key, 0)) for values in splits.values()]
        + [_n(sum(values.get(key, 0) for values in splits.values()))]
        for key, name in metrics
    ]
    head = [""] + [_t(split) for split in splits] + ["all"]
    return f'<section id="counts"><h2>Counts</h2>{_table(head, rows)}</section>'


def _missing_flag(split: str) -> str:
    """What a class without an instance in `split` means there."""
    if "train" in split.lower():
        return _flag("never seen in training", "bad")
    return _flag("no ground truth at evaluation", "bad")


def _classes(stats: dict) -> str:
    splits = stats["splits"]
    head = ["Class"]
    for split in splits:
        head += [f"{_t(split)} instances", "images", "share"]
    rows = []
    for name in stats["classes"]:
        colour = "#{:02x}{:02x}{:02x}".format(*class_color(name[:40]))
        row = [f'<span class="swatch" style="background:{colour}"></span>{_t(name)}']
        for split, values in splits.items():
            counts = values["classes"].get(name, {"instances": 0, "images": 0, "share": 0.0})
            flags = ""
            if name in values.get("missing_classes", []):
                flags += _missing_flag(split)
            if name in values.get("imbalanced_classes", []):
                flags += _flag("imbalanced", "warn")
            share = counts["share"] * 100
            row += [
                f"{_n(counts['instances'])} {flags}",
                _n(counts["images"]),
                f'{share:.1f}%<span class="share"><i style="width:{share:.1f}%"></i></span>',
            ]
        rows.append(row)
    note = (
        "<p class=\"note\">Share: the class's part of the split's objects. Imbalanced: fewer "
        "than 10% of the instances of the split's most frequent class.</p>"
    )
    return f'<section id="classes"><h2>Classes</h2>{note}{_table(head, rows)}</section>'


def _histograms(stats: dict) -> str:
    parts = []
    for key, title, unit in _HISTOGRAMS:

        def draw(values: dict, key: str = key, unit: str = unit) -> str:
            histogram = values["histograms"][key]
            labels = _bins(histogram["edges"], discrete=key == "objects_per_image")
            return _bar_chart(list(zip(labels, histogram["counts"], strict=True)), unit)

        parts.append(_per_split(stats, title, draw))

    def areas(values: dict) -> str:
        area = values["area"]
        rows = [
            ("small < 32²", area["small"]),
            ("medium < 96²", area["medium"]),
            ("large", area["large"]),
        ]
        return _bar_chart(rows, "boxes")

    def sizes(values: dict) -> str:
        rows = [(size, count) for size, count in values["image_sizes"]]
        if values.get("other_image_sizes"):
            rows.append(("other sizes", values["other_image_sizes"]))
        return _bar_chart(rows, "images")

    parts.append(_per_split(stats, "Box area (COCO, px²)", areas))
    parts.append(_per_split(stats, "Most common image sizes (W×H)", sizes))
    return (
        '<section id="histograms"><h2>Histograms</h2>'
        f'<div class="cards">{"".join(parts)}</div></section>'
    )


def _placement(stats: dict) -> str:
    centres = stats["centres"]
    overall = [_heatmap(centres["all"], "all splits")] + [
        _heatmap(values["centres"], split) for split, values in stats["splits"].items()
    ]
    with_boxes = [
        name for name in stats["classes"] if any(map(any, centres["by_class"].get(name, [])))
    ]
    shown = with_boxes[:MAX_CLASS_PANELS]
    by_class = [_heatmap(centres["by_class"][name], name, 120) for name in shown]
    note = _capped(len(shown), len(with_boxes), "classes with boxes")
    coverage = _heatmap(stats["boxes"]["all"], "every box drawn over the others", 256)
    return (
        '<section id="placement"><h2>Box placement</h2><p class="note">Positions in the image '
        "frame, whatever the image's size; darker is more (square-root scale).</p>"
        f'<h3>Box centres</h3><div class="heats">{"".join(overall)}</div>'
        f'<h3>Box centres by class</h3>{note}<div class="heats">{"".join(by_class)}</div>'
        f'<h3>All boxes overlaid</h3><div class="heats">{coverage}</div></section>'
    )


def _capped(shown: int, total: int, what: str) -> str:
    if shown == total:
        return ""
    return (
        f'<p class="note">Shown for the first {_n(shown)} of {_n(total)} {what} (label map '
        "order); the class table lists every class.</p>"
    )


def _outliers(stats: dict, thumbnails: dict[str, bytes]) -> str:
    parts = []
    for key, title, rule in _OUTLIERS:
        found = stats["outliers"][key]
        parts.append(f"<h3>{_t(title)}: {_n(found['count'])}</h3>")
        if not found["first"]:
            continue
        more = (
            f", the first {len(found['first'])} shown"
            if found["count"] > len(found["first"])
            else ""
        )
        rows = [
            [
                _t(item["image"]),
                _t(item["split"]),
                _t(item["class"]),
                _t(", ".join(f"{value:g}" for value in item["box"])),
                f"{_n(item['width'])}×{_n(item['height'])}",
                _t(item["why"]),
            ]
            for item in found["first"]
        ]
        head = ["Image", "Split", "Class", "Box (px)", "Image size", "Why"]
        pictures = [
            _tile(thumbnails, item["split"], item["image"])
            for item in found["first"]
            if f"{item['split']}/{item['image']}" in thumbnails
        ]
        parts.append(f'<p class="note">{_t(rule)}{more}.</p>{_table(head, rows, 3)}')
        if pictures:
            parts.append(f'<div class="sheet small">{"".join(pictures)}</div>')
    return f'<section id="outliers"><h2>Outliers</h2>{"".join(parts)}</section>'


def _class_sheets(stats: dict) -> tuple[list[tuple[str, list[dict]]], int]:
    """(class, its sampled examples drawn) of the classes that get a sheet, and how many
    classes have sampled examples."""
    by_class = stats["sample"]["by_class"]
    with_examples = [name for name in stats["classes"] if by_class.get(name)]
    per_class = CLASS_TILES_FEW if len(with_examples) <= _FEW_CLASSES else CLASS_TILES_MANY
    shown = [(name, by_class[name][:per_class]) for name in with_examples[:MAX_CLASS_PANELS]]
    return shown, len(with_examples)


def drawn_sample(stats: dict) -> list[dict]:
    """The sampled examples (stats.json's SAMPLE) whose pictures the page shows: every split's,
    and those of the classes that get a sheet. Only these are worth reading back: at 10,000
    classes the sample holds 80,000 examples, of which the page draws a few hundred."""
    by_split = stats["sample"]["by_split"].values()
    by_class = [examples for _, examples in _class_sheets(stats)[0]]
    return [example for examples in (*by_split, *by_class) for example in examples]


def _sheets(stats: dict, thumbnails: dict[str, bytes]) -> str:
    sample = stats["sample"]
    parts = []
    for split, examples in sample["by_split"].items():
        tiles = "".join(_tile(thumbnails, split, example["image"]) for example in examples)
        total = stats["splits"].get(split, {}).get("images", len(examples))
        parts.append(
            f'<h3>{_t(split)}: {len(examples)} of {_n(total)} images</h3><div class="sheet">'
            f"{tiles}</div>"
        )
    shown, with_examples = _class_sheets(stats)
    parts.append(f"<h3>By class</h3>{_capped(len(shown), with_examples, 'classes')}")
    for name, examples in shown:
        tiles = "".join(_tile(thumbnails, e["split"], e["image"]) for e in examples)
        parts.append(f'<h4>{_t(name)}</h4><div class="sheet small">{tiles}</div>')
    return (
        '<section id="sheets"><h2>Examples</h2><p class="note">A fixed sample: the same '
        "images on every run of the same data.</p>" + "".join(parts) + "</section>"
    )


def _rejected(stats: dict, thumbnails: dict[str, bytes]) -> str:
    rejected = stats.get("rejected", {"count": 0, "first": []})
    first = rejected["first"]
    parts = [f"<p>Images rejected: {_n(rejected['count'])}.</p>"]
    if first:
        if rejected["count"] > len(first):
            parts.append(f'<p class="note">The first {len(first)} by source.</p>')
        rows = [
            [_t(item.get("image") or ""), _t(item["source"]), _t(item["split"]), _t(item["reason"])]
            for item in first
        ]
        parts.append(_table(["Image", "Source", "Split", "Reason"], rows, 4))
        pictures = [
            _tile(thumbnails, item["split"], item["image"])
            for item in first
            if item.get("image") and f"{item['split']}/{item['image']}" in thumbnails
        ]
        if pictures:
            parts.append(f'<div class="sheet small">{"".join(pictures)}</div>')
    return f'<section id="rejected"><h2>Rejected images</h2>{"".join(parts)}</section>'


def _pair_tile(thumbnails: dict[str, bytes], name: str, splits: list[str]) -> str:
    """The tile of an image of a pair, from whichever of the pair's splits has its picture."""
    split = next((s for s in splits if f"{s}/{name}" in thumbnails), splits[0] if splits else "")
    return _tile(thumbnails, split, name)


def _duplicates(stats: dict, thumbnails: dict[str, bytes]) -> str:
    found = stats.get("duplicates", {"pairs": [], "count": 0, "across_splits": 0})
    pairs = found["pairs"][:_MAX_PAIRS]
    parts = [
        f"<p>Pairs of duplicate images: {_n(found['count'])}; across splits: "
        f"{_n(found['across_splits'])}. An image in both training and evaluation inflates the "
        "scores.</p>"
    ]
    if len(found["pairs"]) > len(pairs):
        parts.append(f'<p class="note">The first {len(pairs)} pairs shown.</p>')
    cards = []
    for pair in pairs:
        splits = pair.get("splits", [])
        flags = _flag(pair["kind"], "warn")
        if pair.get("across"):
            flags += _flag("leak across splits", "bad")
        cards.append(
            f'<div class="card"><div>{flags} <span class="note">{_t(" / ".join(splits))}'
            f'</span></div><div class="pair small">{_pair_tile(thumbnails, pair["a"], splits)}'
            f"{_pair_tile(thumbnails, pair['b'], splits)}</div></div>"
        )
    if cards:
        parts.append(f'<div class="pairs">{"".join(cards)}</div>')
    return f'<section id="duplicates"><h2>Duplicates and leakage</h2>{"".join(parts)}</section>'


def _turned(stats: dict) -> str:
    turned = stats["turned"]
    names = "".join(f"<li>{_t(name)}</li>" for name in turned["first"])
    more = f" The first {len(turned['first'])}:" if turned["count"] > len(turned["first"]) else ""
    listing = f'<ul class="names">{names}</ul>' if names else ""
    return (
        '<section id="turned"><h2>Turned for EXIF orientation</h2>'
        "<p>Images stored sideways or upside down, turned upright with their boxes: "
        f"{_n(turned['count'])}.{more}</p>{listing}</section>"
    )


def render_page(stats: dict, thumbnails: dict[str, bytes]) -> str:
    """The report page of `stats` (stats.json, version 1), with `thumbnails` (JPEG bytes keyed
    "split/image") drawn where the page shows those images."""
    inputs = stats.get("source", {}).get("inputs", [])
    title = "Dataset report" + (f": {', '.join(map(str, inputs))}" if inputs else "")
    body = "".join(
        [
            _counts(stats),
            _classes(stats),
            _histograms(stats),
            _placement(stats),
            _outliers(stats, thumbnails),
            _sheets(stats, thumbnails),
            _rejected(stats, thumbnails),
            _duplicates(stats, thumbnails),
            _turned(stats),
        ]
    )
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{GENERATOR}'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_t(title[:200])}</title><style>{_CSS}</style></head>"
        f"<body>{_header(stats)}<main>{body}</main></body></html>\n"
    )
