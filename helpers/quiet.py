"""Keep library log noise out of the notebooks, so a red block always means something the user must read.

``helpers/__init__.py`` calls :func:`quiet_library_logs` when any helpers module is first imported, which is
before any helpers code imports TensorFlow. It does three narrow things, each a known source of noise:

* ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set it): TensorFlow's C++ log lines (``I external/local_xla…``,
  ``Local rendezvous is aborting with status: OUT_OF_RANGE``, oneDNN notices, ``E … failed call to cuInit`` on a
  CPU runtime, ``E … oneDNN supports DT_INT32 only …``) are hidden. Level 3 hides C++ ERROR lines too: on Colab
  and CPU machines every ERROR line seen is of this harmless kind, an error that stops TensorFlow is raised as a
  Python exception (``tf.errors.ResourceExhaustedError`` ...) and shown in the cell, FATAL lines still print, and
  "no GPU" is said in plain words by ``environment.gpu_check``. Set ``TF_CPP_MIN_LOG_LEVEL=0`` before importing
  helpers to see everything.
* TensorFlow's Python logger sets itself to INFO in interactive sessions and then prints
  ``INFO:tensorflow:Assets written to …`` twice (stdout and stderr): records below WARNING are dropped.
* Model Garden (``official.core.input_reader``) imports ``tensorflow_datasets`` unconditionally, and that
  import fails inside ``tensorflow_metadata`` with Colab's protobuf ("Detected incompatible Protobuf
  Gencode/Runtime versions … gencode 6.31.1 runtime 5.29.6"). ``tensorflow_datasets`` catches the error itself
  and logs it with a 77-line traceback through absl; nothing of ``tensorflow_datasets`` is used here, and the
  import cannot be avoided without replacing a module of someone else's package. Exactly that record is
  dropped; any other absl message passes.
"""

from __future__ import annotations

import importlib.util
import logging
import os

TENSORFLOW_CPP_LOG_LEVEL = "3"  # 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR (FATAL still shown); see above
# The one absl record dropped: its message starts with this and names tensorflow_metadata's generated code.
PROTOBUF_VERSION_NOTICE = "Detected incompatible Protobuf Gencode/Runtime versions when loading tensorflow_metadata/"


class ProtobufVersionNoticeFilter(logging.Filter):
    """Drops the one harmless absl record logged when ``tensorflow_datasets`` fails to import (see module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) for that record only."""
        return not str(record.getMessage()).startswith(PROTOBUF_VERSION_NOTICE)


class BelowWarningFilter(logging.Filter):
    """Drops TensorFlow's Python INFO/DEBUG records (e.g. ``Assets written to …``); warnings and errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        """True for WARNING and above."""
        return record.levelno >= logging.WARNING


def _add_once(logger: logging.Logger, filter_type: type[logging.Filter]) -> None:
    """Add one ``filter_type`` filter to ``logger`` unless it already has one (modules may be reloaded)."""
    if not any(isinstance(existing, filter_type) for existing in logger.filters):
        logger.addFilter(filter_type())


def quiet_library_logs() -> None:
    """Hide TensorFlow's C++ log lines, its Python INFO lines and the tensorflow_datasets protobuf notice.

    Must run before TensorFlow is imported for the C++ level to apply (TensorFlow reads the variable once).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TENSORFLOW_CPP_LOG_LEVEL)
    # 'tensorflow' is a plain logging.Logger that TensorFlow itself fetches with getLogger: creating it first is safe.
    _add_once(logging.getLogger("tensorflow"), BelowWarningFilter)
    if importlib.util.find_spec("absl") is not None:  # absl comes with TensorFlow; without it there is no notice
        from absl import logging as absl_logging  # ~45 ms; its logger must be absl's own class, so not getLogger

        _add_once(absl_logging.get_absl_logger(), ProtobufVersionNoticeFilter)
