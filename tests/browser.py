"""Opening pages in headless Chromium, as a user opens the dataset report: its text and
table cells, a screenshot, and the requests it made (Chromium's net log)."""

from __future__ import annotations

import html.parser
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image


class PageText(html.parser.HTMLParser):
    """The text of a page, and the cells of its tables' rows."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.rows: list[list[str]] = []
        self.tags: list[tuple[str, dict]] = []
        self.in_cell = False

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.rows[-1].append("")
            self.in_cell = True

    def handle_endtag(self, tag) -> None:
        if tag in ("td", "th"):
            self.in_cell = False

    def handle_data(self, data) -> None:
        self.parts.append(data)
        if self.in_cell:
            self.rows[-1][-1] += data

    @classmethod
    def parse(cls, page: str) -> PageText:
        parser = cls()
        parser.feed(page)
        return parser

    @classmethod
    def of(cls, page: str) -> str:
        return " ".join(" ".join(cls.parse(page).parts).split())


def chromium_binary() -> str:
    """Headless Chromium's binary; without one the test skips, except in CI (`CI` set), whose
    `.ci/run` installs it, where it fails."""
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium binary: .ci/run installs Debian's chromium")
        pytest.skip("no chromium binary found")
    return found


def open_page(chromium: str, page, tmp_path, *flags: str) -> subprocess.CompletedProcess:
    """Opens `page` in headless `chromium`, with a profile of its own, and `flags`."""
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *flags,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def page_requests(net_log) -> list[str]:
    """URLs of the requests a page made, from Chromium's net log. The browser's own (update
    checks, account lookups) have no origin as initiator; a page's have its origin, "null"
    for a file."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        event["params"].get("url")
        for event in log["events"]
        if event["type"] == start
        and "url" in event["params"]
        and event["params"].get("initiator") != "not an origin"
    ]


def drawn(screenshot) -> bool:
    """Whether a screenshot shows something: many colours, none covering 90% of it."""
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    _, counts = np.unique(pixels, axis=0, return_counts=True)
    return len(counts) > 200 and counts.max() < 0.9 * len(pixels)
