"""The one small family of exceptions that helpers raise for problems a user can fix.

Every message is one line that names the file or form field at fault and the fix, e.g.
``annotations/img_014.xml: box 3 ('RBC') has xmax 712 > image width 640. Fix the box ...``.
Errors about bad user input subclass ``ValueError`` so generic code can catch them too.
"""

import os

FULL_TRACEBACK_VARIABLE = "DL4CELLS_FULL_TRACEBACK"


class HelpersError(Exception):
    """Base class of every error helpers raises on purpose.

    In IPython/Jupyter/Colab it renders as its one line (``ConfigError: <message and fix>``) instead of a
    traceback through helpers' code, which only hides the fix from a user who never reads code.
    ``str(error)`` is the message alone. Set the environment variable ``DL4CELLS_FULL_TRACEBACK=1`` to get
    IPython's full traceback back (for developers).
    """

    def _render_traceback_(self) -> list[str]:
        """The lines IPython shows for this error instead of its traceback (IPython's own hook)."""
        if os.environ.get(FULL_TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise NotImplementedError("full traceback requested")  # IPython falls back to its traceback
        return [f"{type(self).__name__}: {self}"]


class DatasetError(HelpersError, ValueError):
    """A user's data (images, annotations, label CSVs) cannot be used as given."""


class ConfigError(HelpersError, ValueError):
    """A form field / configuration value is missing, of the wrong type or out of range."""


class DownloadError(HelpersError, RuntimeError):
    """A download failed, was corrupted, or is impossible offline."""


class ModelError(HelpersError, ValueError):
    """A model folder, checkpoint or backbone choice cannot be used as given."""


class RuntimeProblem(HelpersError, RuntimeError):
    """The runtime cannot run the notebook as it is (wrong Colab runtime type, modules to reload)."""
