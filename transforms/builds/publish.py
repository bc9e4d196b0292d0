"""Publishing a complete build, finishing one an interrupted run left half-published, and
removing what earlier builds left behind (see `transforms.builds.layout` for the layout).

A build folder (`OUT/.builds/<id>/`, `OUT/versions/<id>/`) is odrecords' own: it is created
under a name only odrecords gives, and only files in it named as odrecords names its files
are removed with it; anything else found there is left and reported. Files at the output's
top are replaced by the stricter rule of `transforms.builds.outputs`, as users may keep their own
files beside them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator

from apache_beam.io.filesystems import FileSystems

from transforms.builds.layout import (
    BUILDS,
    LATEST,
    MANIFEST,
    PARTS_DIR,
    VERSIONS,
    Layout,
    is_build_id,
    join,
    read_pointer,
)
from transforms.builds.lock import abandoned_builds, forget, is_running, parts_of
from transforms.builds.outputs import (
    NotOurOutput,
    Replaced,
    delete_path,
    listed_files,
    read_summary,
    remove_stale,
    with_checksum,
)
from transforms.builds.safe_write import Ours, check_place, move_file, new_folder, write_file

# The published manifest a flat build replaces, kept in the build folder while its files are
# moved up, so an interrupted publication can still remove the files it made stale.
REPLACED_MANIFEST = "replaced-manifest.json"
_LOG = logging.getLogger(__name__)
_BEAM_TEMP = re.compile(r"beam-temp-[^/]+/[^/]+")
# The names part files get (`transforms.tfrecord_sink.PartFile`: a label and a random hex
# suffix): only such files are removed from a scratch folder a lock names.
_PART_FILE = re.compile(r"(?:[\w.-]+-)?[0-9a-f]{32}")


def write_text(output: str, path: str, text: str, ours: Ours) -> dict:
    """Writes `text` to `path` inside `output` (see `transforms.builds.safe_write`); returns the
    file's {size, sha256}."""
    return write_file(output, path, [text.encode("utf-8")], ours)


def write_json(output: str, path: str, document: dict, ours: Ours) -> dict:
    return write_text(output, path, json.dumps(document, indent=2, ensure_ascii=False) + "\n", ours)


def _is_pointer(output: str, _: str) -> bool:
    """Whether `OUT/LATEST` is a pointer odrecords wrote (names a version), so replaceable."""
    try:
        return read_pointer(output) is not None
    except NotOurOutput:
        return False


def write_pointer(output: str, build_id: str) -> None:
    """Points `OUT/LATEST` at a version, atomically: a reader sees the old name or the new
    one, never a mix. Local disk: a temporary file renamed over the pointer; GCS and S3: one
    object write, which becomes visible whole when it completes."""
    path = FileSystems.join(output, LATEST)
    write_file(
        output,
        path,
        [f"{build_id}\n".encode()],
        lambda relative: _is_pointer(output, relative),
        durable=True,
    )


def files_under(folder: str) -> Iterator[tuple[str, bool]]:
    """(relative path, whether it is a regular file) of everything under `folder`; links are
    listed, never followed."""
    if FileSystems.get_scheme(folder) is None:
        for root, dirs, names in os.walk(folder):
            for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                path = os.path.join(root, name)
                relative = os.path.relpath(path, folder).replace(os.sep, "/")
                yield relative, stat.S_ISREG(os.lstat(path).st_mode)
        return
    prefix = folder.rstrip("/") + "/"
    for result in FileSystems.match([prefix + "**"]):
        for metadata in result.metadata_list:
            yield metadata.path[len(prefix) :], True


def _remove_empty_folders(folder: str) -> None:
    """Removes `folder` and the folders in it once they are empty (local disk only: object
    stores have no folders)."""
    if FileSystems.get_scheme(folder) is not None or not os.path.isdir(folder):
        return
    for root, dirs, _ in os.walk(folder, topdown=False):
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path) and not os.listdir(path):
                os.rmdir(path)
    if not os.listdir(folder):
        os.rmdir(folder)


def remove_build(folder: str, named: Callable[[str], bool]) -> None:
    """Removes a build folder: the regular files in it that odrecords names so (`named`),
    then the folders left empty; anything else is left in place, with a warning in the log."""
    left = []
    for relative, regular in sorted(files_under(folder)):
        temporary = relative.startswith(f"{PARTS_DIR}/") or _BEAM_TEMP.fullmatch(relative)
        if regular and (named(relative) or temporary):
            delete_path(join(folder, relative))
        else:
            left.append(relative)
    if left:
        _LOG.warning("left in %s, as odrecords did not write them: %s", folder, ", ".join(left))
    _remove_empty_folders(folder)


def _builds_in(parent: str) -> list[str]:
    """The names of the build folders in `parent`, oldest first. A link named as a build is
    none: neither published nor removed, it is never followed."""
    if FileSystems.get_scheme(parent) is None:
        if not os.path.isdir(parent) or os.path.islink(parent):
            return []
        return sorted(
            name
            for name in os.listdir(parent)
            if is_build_id(name) and not os.path.islink(os.path.join(parent, name))
        )
    prefix = parent.rstrip("/") + "/"
    names = {
        metadata.path[len(prefix) :].split("/", 1)[0]
        for result in FileSystems.match([prefix + "**"])
        for metadata in result.metadata_list
    }
    return sorted(name for name in names if is_build_id(name))


def _manifest_of(folder: str) -> dict | None:
    """The checked manifest of a build folder, or None when it has none (an interrupted
    build) or one odrecords did not write."""
    path = FileSystems.join(folder, MANIFEST)
    if not FileSystems.exists(path):
        return None
    try:
        return read_summary(path)
    except NotOurOutput:
        return None


def _is_published(folder: str) -> bool:
    manifest = _manifest_of(folder)
    return bool(manifest and manifest.get("build", {}).get("published"))


def _earlier_files(layout: Layout) -> dict[str, dict]:
    """The files the output a flat build replaces lists: its manifest's, or the copy of it
    an interrupted publication kept in the build folder; none when neither is odrecords'."""
    for path in (join(layout.output, MANIFEST), join(layout.build, REPLACED_MANIFEST)):
        if FileSystems.exists(path):
            try:
                return listed_files(read_summary(path))
            except NotOurOutput:
                return {}
    return {}


def _to_move(layout: Layout, manifest: dict) -> list[str]:
    """The files of a build still in its folder, to be moved to the output's top."""
    listed = sorted(listed_files(manifest))
    return [relative for relative in listed if FileSystems.exists(join(layout.build, relative))]


def check_publishable(layout: Layout, manifest: dict) -> None:
    """Raises UnsafeWrite (`transforms.builds.safe_write`), moving nothing, when a file of the build
    could not be moved to the output's top: a link on its way or in its place, or a file
    there that the replaced output did not write."""
    earlier = _earlier_files(layout)
    for relative in [*_to_move(layout, manifest), MANIFEST]:
        # The replaced manifest is moved away first.
        ours = relative == MANIFEST or relative in earlier
        check_place(layout.output, join(layout.output, relative), lambda _, ours=ours: ours)


def publish_flat(layout: Layout, manifest: dict, named: Callable[[str], bool]) -> dict:
    """Moves a complete build (`manifest`, as written into its folder) to the output's top,
    removes the files the replaced output wrote there that this build did not (by the rule of
    `transforms.builds.outputs`), writes the manifest last and removes the build folder. Returns the
    published manifest. Every step can be taken again, so a publication an interrupted run
    began is finished by taking them all again (`finish_publications`). Nothing is moved
    when a file could not be (`check_publishable`)."""
    build, output = layout.build, layout.output
    current = FileSystems.join(output, MANIFEST)
    replaced_copy = FileSystems.join(build, REPLACED_MANIFEST)
    published = _manifest_of(output)
    if published is not None and published.get("build", {}).get("id") == layout.build_id:
        remove_build(build, named)
        return published
    check_publishable(layout, manifest)
    earlier = _earlier_files(layout)
    written = listed_files(manifest)
    if FileSystems.exists(current):
        # Kept with the build until it is published: the files it lists may be replaced.
        move_file(output, current, replaced_copy, new_folder)
    for relative in _to_move(layout, manifest):
        move_file(
            output,
            join(build, relative),
            join(output, relative),
            earlier.__contains__,
            written[relative],
        )
    replaced = Replaced()
    if FileSystems.exists(replaced_copy):
        replaced = remove_stale(output, earlier, written, named)
    published = with_checksum({**manifest, "earlier_output": replaced.as_json()})
    write_json(output, current, published, lambda _: False)
    remove_build(build, named)
    return published


def finish_publications(output: str, named: Callable[[str], bool]) -> list[str]:
    """Finishes the publications of builds without versions that an interrupted run began:
    a build folder whose manifest says it is to be published. Returns their ids."""
    finished = []
    for name in _builds_in(FileSystems.join(output, BUILDS)):
        folder = FileSystems.join(output, BUILDS, name)
        manifest = _manifest_of(folder)
        if manifest and manifest.get("build", {}).get("published"):
            publish_flat(Layout(output, name), manifest, named)
            finished.append(name)
    return finished


def remove_unfinished(
    output: str, build_id: str, parts: str | None, named: Callable[[str], bool]
) -> None:
    """Removes what an unfinished build wrote: its folder, unless it holds a published build
    (a version `LATEST` may name, or a publication `finish_publications` finishes), and its
    temporary files when they are in a folder of their own (`parts`)."""
    for parent in (BUILDS, VERSIONS):
        folder = FileSystems.join(output, parent, build_id)
        if FileSystems.exists(folder) and not _is_link(folder) and not _is_published(folder):
            remove_build(folder, named)
    if parts is not None and FileSystems.exists(parts) and not _is_link(parts):
        remove_build(parts, _PART_FILE.fullmatch)


def _is_link(path: str) -> bool:
    """Whether `path` is a local link: a folder named as a build's that is one is no build's,
    and is never followed to remove what it leads to."""
    return FileSystems.get_scheme(path) is None and os.path.islink(path)


def remove_abandoned(output: str, named: Callable[[str], bool]) -> list[str]:
    """Removes what builds whose launcher failed or was killed left (`transforms.builds.lock`)
    and returns their ids. Run before a new build writes anything, so the space they took is
    free for it."""
    removed = []
    for build_id in abandoned_builds(output):
        remove_unfinished(output, build_id, parts_of(output, build_id), named)
        forget(output, build_id)
        removed.append(build_id)
    return removed


def remove_held_back(output: str, named: Callable[[str], bool]) -> list[str]:
    """Removes the builds in a local `output` that finished without being published (held
    back by the error-rate gate, or by something in the way of publishing) and returns their
    ids. Kept for a look until the next build starts: on a nearly full disk they would
    otherwise take the space every later build needs. A build whose launcher still holds its
    lock is left; on GCS and S3 they stay until a build is published (`remove_earlier_builds`),
    as a detached build there holds no lock."""
    removed = []
    for parent in (BUILDS, VERSIONS):
        folder = FileSystems.join(output, parent)
        if FileSystems.get_scheme(folder) is not None:
            return []
        for name in _builds_in(folder):
            build = join(folder, name)
            manifest = None if _is_link(build) else _manifest_of(build)
            held_back = manifest is not None and manifest.get("build", {}).get("published") is False
            if held_back and not is_running(output, name):
                remove_build(build, named)
                removed.append(name)
    return removed


def remove_earlier_builds(layout: Layout, named: Callable[[str], bool]) -> None:
    """After `layout`'s build was published: removes the build folders that started before it
    and were never published (interrupted, or held back by the error-rate gate), and, with
    versions, the published versions beyond the newest `keep_versions`. Folders of builds
    that started later, or whose launcher still holds their lock, are left: they may still be
    running."""
    parent = FileSystems.join(layout.output, VERSIONS if layout.versions else BUILDS)
    names = [
        name
        for name in _builds_in(parent)
        if name < layout.build_id and not is_running(layout.output, name)
    ]
    published = [name for name in names if layout.versions and _is_published(join(parent, name))]
    # This build is one of the versions kept.
    kept = set(published[max(0, len(published) - layout.keep_versions + 1) :])
    for name in names:
        if name not in kept:
            remove_build(join(parent, name), named)
    if not layout.versions and FileSystems.get_scheme(parent) is None:
        with contextlib.suppress(OSError):  # Only when empty: a later build may be running.
            os.rmdir(parent)
