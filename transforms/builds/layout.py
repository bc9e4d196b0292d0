"""Where a build is written, where it is published, and which earlier build it follows.

A build never writes where readers look: it is written whole into a folder of its own inside
the output, and published only once complete, so the previous dataset stays complete and
readable meanwhile and an interrupted build damages nothing.

- Without versions the dataset lies at the output's top (`OUT/train/...`, `OUT/manifest.json`);
  a build is written into `OUT/.builds/<build id>/` and published by moving its files up,
  the manifest last.
- With versions (`--versions`) a build is written into `OUT/versions/<build id>/` and
  published by rewriting the small pointer `OUT/LATEST` (the version folder's name) last: a
  single-object write, atomic on local disk, GCS and S3 alike, which have no atomic folder
  rename. Readers resolve the pointer once and read one complete version.

Build ids are the UTC start time and a random suffix, so they sort in start order (of
launchers whose clocks agree).
"""

from __future__ import annotations

import datetime
import os
import re
import uuid
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from transforms.builds.outputs import NotOurOutput, listed_files, read_summary

VERSIONS = "versions"
LATEST = "LATEST"
BUILDS = ".builds"
MANIFEST = "manifest.json"
# Temporary files of a build, in its folder unless --temp_location is given.
PARTS_DIR = ".parts"
_BUILD_ID = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{6}")


def new_build_id(now: datetime.datetime | None = None) -> str:
    """A new build id: `20261121T101500123456Z-3fa2c1` (to the microsecond, so that builds
    started one after the other sort in that order)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}"


def is_build_id(name: str) -> bool:
    """Whether `name` is named as odrecords names builds (and so their folders)."""
    return bool(_BUILD_ID.fullmatch(name))


def join(folder: str, relative: str) -> str:
    """`folder`/`relative`, `relative` being a `/`-separated path."""
    return FileSystems.join(folder, *relative.split("/"))


@dataclass(frozen=True)
class Layout:
    """Where this build goes: `output` as given, the build's id, and whether it is published
    as a version (keeping `keep_versions` of them) or at the output's top."""

    output: str
    build_id: str
    versions: bool = False
    keep_versions: int = 1

    @property
    def build(self) -> str:
        """The folder this build is written into."""
        parent = VERSIONS if self.versions else BUILDS
        return FileSystems.join(self.output, parent, self.build_id)

    @property
    def published(self) -> str:
        """The folder readers find this build in once it is published."""
        return self.build if self.versions else self.output


@dataclass(frozen=True)
class PreviousBuild:
    """The build a new one follows: the folder its files are in and its checked manifest."""

    folder: str
    manifest: dict

    @property
    def files(self) -> dict[str, dict]:
        """{relative path: {size, sha256}} of the files it wrote."""
        return listed_files(self.manifest)

    @property
    def build_id(self) -> str | None:
        """Its build id; None for an output written before builds had ids."""
        return self.manifest.get("build", {}).get("id")

    @property
    def class_ids(self) -> dict[str, int]:
        """{class: id} of its label map and of the classes retired before it, whose ids no
        later build gives to another class (see `transforms.label_map.retired_classes`)."""
        ids: dict[str, int] = {}
        for key, value in (
            ("retired_classes", lambda entry: entry),
            ("classes", lambda entry: entry.get("id") if isinstance(entry, dict) else None),
        ):
            table = self.manifest.get(key)
            for name, entry in table.items() if isinstance(table, dict) else ():
                number = value(entry)
                if isinstance(name, str) and isinstance(number, int) and number >= 1:
                    ids[name] = number
        return ids


def read_pointer(output: str) -> str | None:
    """The version `OUT/LATEST` names, or None when there is no pointer. Raises NotOurOutput
    for a pointer that does not name a version as odrecords names them."""
    path = FileSystems.join(output, LATEST)
    if FileSystems.get_scheme(path) is None:
        if not os.path.lexists(path):
            return None
        if not os.path.isfile(path) or os.path.islink(path):
            raise NotOurOutput(f"{path} is not a regular file")
    elif not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        name = handle.read(100).decode("utf-8", "replace").strip()
    if not is_build_id(name):
        raise NotOurOutput(f"{path} does not name a version")
    return name


def latest_folder(output: str) -> str | None:
    """The folder of the latest published dataset in `output`: the version `LATEST` names, or
    the output itself when it holds a dataset without versions; None when it holds neither."""
    name = read_pointer(output)
    if name is not None:
        return FileSystems.join(output, VERSIONS, name)
    if FileSystems.exists(FileSystems.join(output, MANIFEST)):
        return output
    return None


def find_previous(output: str) -> PreviousBuild | None:
    """The latest published build in `output`, with its manifest checked (see
    `transforms.builds.outputs`); None when there is none. Raises NotOurOutput when what is there
    was not written by odrecords or was changed since."""
    folder = latest_folder(output)
    if folder is None:
        return None
    manifest = read_summary(FileSystems.join(folder, MANIFEST))
    listed_files(manifest)
    return PreviousBuild(folder, manifest)
