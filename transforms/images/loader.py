"""Reading, measuring and checking images, in parallel, after annotations are grouped.

An image is accepted only if TensorFlow decodes all of it: a truncated JPEG is caught here,
not hours into training (`transforms.images.verify` gives TensorFlow's verdict, faster). JPEG and
PNG keep their original bytes; any other format the Python Imaging Library reads (TIFF, BMP,
GIF, WebP, ...) is converted losslessly to PNG, because the Object Detection API's decoder
expects `image/format` to be jpeg or png. An image with an EXIF orientation is made to hold
the pixels its annotation was drawn on (`transforms.images.orientation`), since TensorFlow ignores
the tag.

No image is rejected for what Pillow makes of it: wherever Pillow fails, TensorFlow is asked
about the original bytes, and an image it decodes is taken as it decodes it (format from the
signature, size and pixels from TensorFlow); one it refuses is rejected with its message.
`tests/test_verify_loader.py` checks the loader's verdicts against TensorFlow's.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from transforms.images.orientation import (
    DEFAULT_POLICY,
    DISPLAYED,
    STORED,
    Orientation,
    OrientationPolicy,
    OrientationTag,
    find_orientation,
    stored_pixels,
    stored_size,
    without_orientation,
)
from transforms.images.verify import (
    Decoded,
    Undecodable,
    declared_size,
    decode,
    pixels,
    signature_format,
)
from transforms.paths import NotRegularFile, UnsafePathError, open_regular, resolve_image
from transforms.readers.labelme import embedded_image
from transforms.records import ImageAnnotation, LoadedImage, excerpt

_KEPT_FORMATS = {"JPEG": "jpeg", "PNG": "png"}
# TensorFlow's messages are its own words, not the input's (the longest seen, giflib's, run
# to about 100 characters): quoted whole up to this, where an excerpt of input is shorter.
_TENSORFLOW_CHARS = 200
# Modes PNG stores as they are; anything else (CMYK, YCbCr, float, ...) becomes RGB(A).
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}


# The reason of an image whose file is not there: most often a wrong --images.
NOT_FOUND = "image file not found"


class ImageRejected(Exception):
    """An image that cannot go into the dataset; the message is the error record's reason."""


# Bytes read at a time: memory follows the file, never the size limit, which may be huge.
_CHUNK = 1024 * 1024


def _read_up_to(handle: BinaryIO, limit: int) -> bytes:
    """At most `limit` + 1 bytes of `handle`, in chunks: `read(limit + 1)` would allocate
    the whole limit up front, however small the file."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = handle.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def _opened(path: str) -> Iterator[BinaryIO]:
    """`path` opened for reading only if it is a regular file (`open_regular`); anything
    that fails while it is open or read rejects the image, with the reason."""
    try:
        with open_regular(path) as handle:
            yield handle
    except NotRegularFile as error:
        raise ImageRejected(f"image path is {error.kind}, not a regular file") from None
    except FileNotFoundError:
        raise ImageRejected(NOT_FOUND) from None
    except Exception as error:  # Each filesystem raises its own error types.
        raise ImageRejected(f"cannot read image: {excerpt(str(error))}") from None


def _check_size(size: int, max_bytes: int) -> None:
    if not size:
        raise ImageRejected("image file is empty")
    if size > max_bytes:
        raise ImageRejected(f"image file is larger than the {max_bytes}-byte limit")


def _read_limited(path: str, max_bytes: int) -> bytes:
    with _opened(path) as handle:
        data = _read_up_to(handle, max_bytes)
    _check_size(len(data), max_bytes)
    return data


def _to_png(image: Image.Image) -> bytes:
    if image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _to_jpeg(turned: Image.Image, options: dict) -> bytes:
    """A turned JPEG, re-encoded with optimized Huffman tables and `options`: where Pillow
    reads the source, its own quantization tables, chroma subsampling and colour profile.
    Pillow cannot turn a JPEG without decoding it, and the source's own tables keep its
    quality, where a fixed quality would blur a fine image or bloat a coarse one (on the
    Raccoon photos: 42 dB PSNR against the source turned, files 27% larger, both medians).
    EXIF is not kept, as it describes the unturned image."""
    buffer = io.BytesIO()
    turned.save(buffer, "JPEG", optimize=True, **options)
    return buffer.getvalue()


class ImageLoader:
    """ImageAnnotation → LoadedImage (bytes, format, measured size), or ImageRejected.

    The pixel limit is checked from the header before anything is decoded, so a
    decompression bomb costs a few bytes of parsing, never gigabytes of memory. It is ours
    that decides, not Pillow's own bomb limit (about 89 million pixels, refused above twice
    that): `setup` raises Pillow's to ours when ours is higher, and an image Pillow still
    refuses or warns about is reported against ours. An image whose header neither odrecords
    nor Pillow reads is held to it at the size TensorFlow decodes it at. Call `setup` once
    per worker (from a DoFn's setup). TensorFlow is imported only when an image needs its
    verdict (`transforms.images.verify.decode`).
    """

    def __init__(
        self,
        images_root: str,
        max_bytes: int,
        max_pixels: int,
        orientation: OrientationPolicy = DEFAULT_POLICY,
    ):
        self._root = images_root
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels
        self._orientation = orientation

    def setup(self) -> None:
        if Image.MAX_IMAGE_PIXELS is not None:
            Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS, self._max_pixels)

    def _decode(self, data: bytes) -> Decoded:
        """The size TensorFlow decodes the bytes at; raises if it cannot. The verdict is
        TensorFlow's, reached by a faster decoder where that one can prove it."""
        try:
            return decode(data)
        except Undecodable as error:
            raise ImageRejected(
                f"TensorFlow cannot decode the image: {excerpt(str(error), _TENSORFLOW_CHARS)}"
            ) from None

    def load(self, annotation: ImageAnnotation, stored: bytes | None = None) -> LoadedImage:
        """Raises ImageRejected with the reason when the image cannot be used.

        The file the key names comes first; when it is not a readable image, the image the
        annotation file embeds (`embedded_in`), under the same limits. `stored` is the key's
        file as `read_stored` returned it, when the caller has read it already: it is then
        not read again."""
        try:
            if stored is None:
                stored = self.read_stored(annotation.image)
            return self._checked(annotation, stored)
        except ImageRejected as error:
            if annotation.embedded_in is None:
                raise
            file_error = error
        try:
            return self._checked(annotation, self._embedded(annotation.embedded_in))
        except ImageRejected as error:
            raise ImageRejected(f"{file_error}; embedded image: {error}") from None

    def read(self, annotation: ImageAnnotation) -> bytes:
        """The image's stored bytes, under the same path rules and size limit as `load` but
        not decoded: the file the key names, else the image the annotation file embeds. For
        hashing images before they are loaded; raises ImageRejected."""
        try:
            return self.read_stored(annotation.image)
        except ImageRejected:
            if annotation.embedded_in is None:
                raise
        return self._embedded(annotation.embedded_in)

    @property
    def root(self) -> str:
        """The folder image keys are relative to."""
        return self._root

    @property
    def max_pixels(self) -> int:
        """The most pixels an image may have."""
        return self._max_pixels

    def read_stored(self, key: str) -> bytes:
        """The bytes of the file `key` names, under the size limit; raises ImageRejected."""
        return _read_limited(self._path(key), self._max_bytes)

    def find(self, annotation: ImageAnnotation) -> None:
        """Raises ImageRejected, with the reason `load` would give, when `load` would find
        no bytes to read: the file the key names must stay inside the images root, be a
        regular file and fit the size limit, else the image the annotation file embeds must
        (which is read, as only reading it finds it). Nothing is decoded, so an image found
        may still be rejected by `load`; a dry run that must not read every image asks
        this."""
        try:
            with _opened(self._path(annotation.image)) as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
            _check_size(size, self._max_bytes)
            return
        except ImageRejected as error:
            if annotation.embedded_in is None:
                raise
            file_error = error
        try:
            self._embedded(annotation.embedded_in)
        except ImageRejected as error:
            raise ImageRejected(f"{file_error}; embedded image: {error}") from None

    def _path(self, key: str) -> str:
        """The path of the file `key` names (`resolve_image`); raises ImageRejected."""
        try:
            return resolve_image(self._root, key)
        except UnsafePathError as error:
            raise ImageRejected(str(error)) from None

    def _embedded(self, annotation_file: str) -> bytes:
        try:
            data = embedded_image(annotation_file)
        except ValueError as error:
            raise ImageRejected(str(error)) from None
        if not data:
            raise ImageRejected("embedded image is empty")
        if len(data) > self._max_bytes:
            raise ImageRejected(f"embedded image is larger than the {self._max_bytes}-byte limit")
        return data

    def _checked(self, annotation: ImageAnnotation, data: bytes) -> LoadedImage:
        """The image in `data`, measured and checked, or ImageRejected.

        Pillow reads what TensorFlow cannot (other formats' pixels, a JPEG's quantization
        tables); whenever it fails, for any reason but the pixel limit, the original bytes
        get TensorFlow's verdict instead (`_read_by_tensorflow`), so no image TensorFlow
        decodes is rejected for what Pillow makes of it (a wrong CRC on a text chunk, a
        damaged Exif block). A JPEG's frame, a PNG's IHDR and a GIF's frames are held to the
        pixel limit first, before either decodes anything."""
        declared = declared_size(data)
        if declared is not None:
            self._check_pixels(*declared)
        try:
            return self._read_by_pillow(annotation, data)
        except ImageRejected:
            raise
        except Exception as error:  # Pillow raises many kinds: TensorFlow decides.
            return self._read_by_tensorflow(annotation, data, error)

    def _check_pixels(self, width: int, height: int) -> None:
        if width * height > self._max_pixels:
            raise ImageRejected(f"image is {width}x{height}, more than {self._max_pixels} pixels")

    def _read_by_pillow(self, annotation: ImageAnnotation, data: bytes) -> LoadedImage:
        """The image as Pillow reads it; raises Pillow's own errors."""
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            # Pillow's limit is at least ours: such an image is past ours too.
            raise ImageRejected(f"image has more than {self._max_pixels} pixels") from None
        self._check_pixels(image.width, image.height)
        tag = find_orientation(data, image.format)
        orientation = self._decided(annotation, tag, stored_size(image))
        return self._loaded(
            annotation, data, image.format, tag, orientation, _PillowPixels(image, orientation)
        )

    def _read_by_tensorflow(
        self, annotation: ImageAnnotation, data: bytes, pillow_error: Exception
    ) -> LoadedImage:
        """The image as TensorFlow decodes it, for one Pillow could not read: its format from
        its signature, its size and, where pixels must be written (turned, or converted to
        PNG), its pixels TensorFlow's. Its size is held to the pixel limit once TensorFlow
        tells it, when the header could not."""
        try:
            verdict = self._decode(data)
        except ImageRejected as refused:
            raise ImageRejected(f"{refused} (Pillow: {_pillow_reason(pillow_error)})") from None
        self._check_pixels(verdict.width, verdict.height)
        image_format = signature_format(data)
        tag = find_orientation(data, image_format)
        orientation = self._decided(annotation, tag, (verdict.width, verdict.height))
        return self._loaded(
            annotation, data, image_format, tag, orientation, _TensorFlowPixels(data), verdict
        )

    def kept_orientation(
        self, annotation: ImageAnnotation, data: bytes, image_format: str, size: tuple[int, int]
    ) -> Orientation | None:
        """What loading makes of the EXIF orientation of stored bytes `data` (pixels `size`)
        written as they are, in `image_format` (jpeg or png). Raises ImageRejected when
        loading would write other bytes: another format (converted to PNG), or pixels turned
        or a tag set to 1; such bytes cannot be a record's image kept as stored."""
        found = signature_format(data)
        if _KEPT_FORMATS.get(found or "") != image_format:
            raise ImageRejected(f"{found} bytes are not written as {image_format}")
        orientation = self._decided(annotation, find_orientation(data, found), size)
        if orientation is not None and orientation.frame is not None:
            raise ImageRejected("loading would change the image's bytes")
        return orientation

    def _decided(
        self, annotation: ImageAnnotation, tag: OrientationTag | None, size: tuple[int, int]
    ) -> Orientation | None:
        """The frame of the annotation on an image whose stored pixels are `size`."""
        if tag is None:
            return None
        declared = annotation.width, annotation.height
        return self._orientation.decide(tag.value, size, None if None in declared else declared)

    def _loaded(
        self,
        annotation: ImageAnnotation,
        data: bytes,
        image_format: str | None,
        tag: OrientationTag | None,
        orientation: Orientation | None,
        source: _Pixels,
        verdict: Decoded | None = None,
    ) -> LoadedImage:
        """The image to write, measured. A JPEG or PNG gets TensorFlow's verdict on its own
        bytes (`verdict`, when already reached) before any turning, so whether it is accepted
        never depends on its orientation tag."""
        if image_format in _KEPT_FORMATS and verdict is None:
            verdict = self._decode(data)
        written, fmt, converted_from = _written(image_format, data, tag, orientation, source)
        decoded = verdict if written is data and verdict is not None else self._decode(written)
        return LoadedImage(
            annotation,
            written,
            fmt,
            decoded.width,
            decoded.height,
            converted_from,
            orientation,
            decoded.preview,
        )


def _pillow_reason(error: Exception) -> str:
    """Pillow's error, without the object address its unidentified-image message holds."""
    if isinstance(error, UnidentifiedImageError):
        return "format not recognised"
    return excerpt(f"{type(error).__name__}: {error}")


class _Pixels(Protocol):
    """Where the pixels of an image to be turned or converted come from."""

    def stored(self) -> Image.Image:
        """The pixels as the file stores them (no EXIF orientation applied)."""

    def jpeg_options(self) -> dict:
        """Pillow's JPEG options that keep the source's quality when re-encoding it."""


@dataclass(frozen=True)
class _PillowPixels:
    """Pixels Pillow reads, with a JPEG's own quantization tables, chroma subsampling and
    colour profile."""

    image: Image.Image
    orientation: Orientation | None

    def stored(self) -> Image.Image:
        self.image.load()
        if self.orientation is not None and self.orientation.frame is not None:
            return stored_pixels(self.image, self.orientation.value)
        return self.image

    def jpeg_options(self) -> dict:
        return {
            "qtables": self.image.quantization,
            "subsampling": JpegImagePlugin.get_sampling(self.image),
            "icc_profile": self.image.info.get("icc_profile"),
        }


# A turned JPEG whose tables Pillow cannot read: quality 95 without chroma subsampling keeps
# all but the finest detail of any source, at the cost of a larger file.
_FALLBACK_JPEG = {"quality": 95, "subsampling": 0}


@dataclass(frozen=True)
class _TensorFlowPixels:
    """Pixels TensorFlow decodes (at 8 bits a sample), for an image Pillow cannot read; a
    JPEG is re-encoded at `_FALLBACK_JPEG`, as its own tables are out of Pillow's reach."""

    data: bytes

    def stored(self) -> Image.Image:
        decoded = pixels(self.data)
        return Image.fromarray(decoded[:, :, 0] if decoded.shape[2] == 1 else decoded)

    def jpeg_options(self) -> dict:
        return _FALLBACK_JPEG


def _written(
    image_format: str | None,
    data: bytes,
    tag: OrientationTag | None,
    orientation: Orientation | None,
    source: _Pixels,
) -> tuple[bytes, str, str | None]:
    """(bytes, format, format converted from or None) of the image to write. JPEG and PNG keep
    their bytes, other formats become PNG; pixels are turned to the displayed image when the
    annotation was drawn on it (PNG losslessly, JPEG re-encoded), and kept bytes of an image
    annotated as stored get the tag set to 1."""
    fmt = _KEPT_FORMATS.get(image_format or "")
    frame = orientation.frame if orientation else None
    if fmt is not None and frame != DISPLAYED:
        if frame == STORED:
            return without_orientation(data, tag), fmt, None
        return data, fmt, None
    image = source.stored()
    if frame == DISPLAYED:
        image = image.transpose(orientation.turn)
    if fmt is None:
        return _to_png(image), "png", (image_format or "unknown").lower()
    if fmt == "jpeg":
        return _to_jpeg(image, source.jpeg_options()), fmt, None
    return _to_png(image), fmt, None
