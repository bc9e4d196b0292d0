"""TensorFlow, imported on first need and quietly.

Importing it costs seconds and about half a gigabyte per process, so `create` imports it
only when an image needs its verdict (`transforms.images.verify`), and `export` and `inspect` at
start. Its native start-up messages (oneDNN, CUDA probing) bypass every log level setting
and would bury the command's own output, so stderr is closed while it loads.
"""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType

_LOCK = threading.Lock()
_MODULE: ModuleType | None = None


def tensorflow() -> ModuleType:
    """The `tensorflow` module, imported by the first caller with stderr closed.

    Safe from threads (images are verified in a pool): the lock makes one thread redirect
    stderr and import while the others wait, since two redirecting at once could leave
    stderr pointing at the null device. Whatever another thread writes to stderr during the
    import is lost with TensorFlow's noise."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    with _LOCK:
        if _MODULE is None:
            sys.stderr.flush()
            saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            try:
                import tensorflow as tf
            finally:
                os.dup2(saved, 2)
                os.close(devnull)
                os.close(saved)
            _MODULE = tf
        return _MODULE
