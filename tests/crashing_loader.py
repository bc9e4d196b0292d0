"""Image loaders that misbehave in worker processes, importable by those workers: one dies on
an image, as a decoder crashing on a hostile file would take its process down; one is slow,
so that a worker is caught in the middle of a shard."""

import os
import time

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


class SlowLoader(ImageLoader):
    """Loads as ImageLoader does, after `delay` seconds per image."""

    def __init__(self, *args, delay: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._delay = delay

    def load(self, annotation, stored=None):
        time.sleep(self._delay)
        return super().load(annotation, stored)
