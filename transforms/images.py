"""Reading, measuring and checking images, in parallel, after annotations are grouped.

An image is accepted only if TensorFlow decodes all of it: a truncated JPEG is caught here,
not hours into training (`transforms.verify` gives TensorFlow's verdict, faster). JPEG and
PNG keep their original bytes; any other format the Python Imaging Library reads (TIFF, BMP,
GIF, WebP, ...) is converted losslessly to PNG, because the Object Detection API's decoder
expects `image/format` to be jpeg or png. An image with an EXIF orientation is made to hold
the pixels its annotation was drawn on (`transforms.orientation`), since TensorFlow ignores
the tag.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from transforms.orientation import (
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
from transforms.paths import NotRegularFile, UnsafePathError, open_regular, resolve_image
from transforms.readers.labelme import embedded_image
from transforms.records import ImageAnnotation, LoadedImage, excerpt
from transforms.verify import Decoded, Undecodable, decode

_KEPT_FORMATS = {"JPEG": "jpeg", "PNG": "png"}
# Modes PNG stores as they are; anything else (CMYK, YCbCr, float, ...) becomes RGB(A).
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}


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


def _read_limited(path: str, max_bytes: int) -> bytes:
    try:
        with open_regular(path) as handle:
            data = _read_up_to(handle, max_bytes)
    except NotRegularFile as error:
        raise ImageRejected(f"image path is {error.kind}, not a regular file") from None
    except FileNotFoundError:
        raise ImageRejected("image file not found") from None
    except Exception as error:  # Each filesystem raises its own error types.
        raise ImageRejected(f"cannot read image: {excerpt(str(error))}") from None
    if not data:
        raise ImageRejected("image file is empty")
    if len(data) > max_bytes:
        raise ImageRejected(f"image file is larger than the {max_bytes}-byte limit")
    return data


def _to_png(image: Image.Image) -> bytes:
    if image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _to_jpeg(turned: Image.Image, source: Image.Image) -> bytes:
    """A turned JPEG, re-encoded with the source's quantization tables and chroma subsampling
    and optimized Huffman tables: Pillow cannot turn a JPEG without decoding it, and the
    source's own tables keep its quality, where a fixed quality would blur a fine image or
    bloat a coarse one (on the Raccoon photos: 42 dB PSNR against the source turned, files
    27% larger, both medians). The colour profile is kept; EXIF is not, as it describes the
    unturned image."""
    buffer = io.BytesIO()
    turned.save(
        buffer,
        "JPEG",
        qtables=source.quantization,
        subsampling=JpegImagePlugin.get_sampling(source),
        optimize=True,
        icc_profile=source.info.get("icc_profile"),
    )
    return buffer.getvalue()


class ImageLoader:
    """ImageAnnotation → LoadedImage (bytes, format, measured size), or ImageRejected.

    The pixel limit is checked from the header before anything is decoded, so a
    decompression bomb costs a few bytes of parsing, never gigabytes of memory. It is ours
    that decides, not Pillow's own bomb limit (about 89 million pixels, refused above twice
    that): `setup` raises Pillow's to ours when ours is higher, and an image Pillow still
    refuses or warns about is reported against ours. Call `setup` once per worker (from a
    DoFn's setup). TensorFlow is imported only when an image needs its verdict
    (`transforms.verify.decode`).
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
                f"TensorFlow cannot decode the image: {excerpt(str(error))}"
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
        try:
            path = resolve_image(self._root, key)
        except UnsafePathError as error:
            raise ImageRejected(str(error)) from None
        return _read_limited(path, self._max_bytes)

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
        """The image in `data`, measured and checked, or ImageRejected."""
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            # Pillow's limit is at least ours: such an image is past ours too.
            raise ImageRejected(f"image has more than {self._max_pixels} pixels") from None
        except UnidentifiedImageError:
            raise ImageRejected("not an image file (format not recognised)") from None
        except Exception as error:
            raise ImageRejected(f"cannot decode image: {excerpt(str(error))}") from None
        if image.width * image.height > self._max_pixels:
            raise ImageRejected(
                f"image is {image.width}x{image.height}, more than {self._max_pixels} pixels"
            )
        tag = find_orientation(data, image.format)
        orientation = None
        if tag is not None:
            declared = annotation.width, annotation.height
            orientation = self._orientation.decide(
                tag.value, stored_size(image), None if None in declared else declared
            )
        try:
            data, fmt, converted_from = _written(image, data, tag, orientation)
        except Exception as error:
            raise ImageRejected(
                f"cannot decode {image.format} image: {excerpt(str(error))}"
            ) from None
        decoded = self._decode(data)
        return LoadedImage(
            annotation,
            data,
            fmt,
            decoded.width,
            decoded.height,
            converted_from,
            orientation,
            decoded.preview,
        )


def _written(
    image: Image.Image, data: bytes, tag: OrientationTag | None, orientation: Orientation | None
) -> tuple[bytes, str, str | None]:
    """(bytes, format, format converted from or None) of the image to write. JPEG and PNG keep
    their bytes, other formats become PNG; pixels are turned to the displayed image when the
    annotation was drawn on it (PNG losslessly, JPEG re-encoded), and kept bytes of an image
    annotated as stored get the tag set to 1."""
    fmt = _KEPT_FORMATS.get(image.format or "")
    frame = orientation.frame if orientation else None
    if fmt is not None and frame != DISPLAYED:
        if frame == STORED:
            return without_orientation(data, tag), fmt, None
        return data, fmt, None
    image.load()
    pixels = stored_pixels(image, orientation.value) if frame else image
    if frame == DISPLAYED:
        pixels = pixels.transpose(orientation.turn)
    if fmt is None:
        return _to_png(pixels), "png", (image.format or "unknown").lower()
    return (_to_jpeg(pixels, image) if fmt == "jpeg" else _to_png(pixels)), fmt, None
