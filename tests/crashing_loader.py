"""An image loader whose worker processes die on one image, as a decoder crashing on a
hostile file would take its process down; importable by those workers."""

import os

from transforms.images.loader import ImageLoader


class CrashingLoader(ImageLoader):
    """Loads as ImageLoader does, but exits the process on `fatal` in any process other than
    the one that made it."""

    def __init__(self, *args, fatal: str, **kwargs):
        super().__init__(*args, **kwargs)
        self._fatal = fatal
        self._maker = os.getpid()

    def load(self, annotation, stored=None):
        if annotation.image == self._fatal and os.getpid() != self._maker:
            os._exit(3)
        return super().load(annotation, stored)
