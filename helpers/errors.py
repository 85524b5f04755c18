"""The one small family of exceptions that helpers raise for problems a user can fix.

Every message is one line that names the file or form field at fault and the fix, e.g.
``annotations/img_014.xml: box 3 ('RBC') has xmax 712 > image width 640. Fix the box ...``.
Errors about bad user input subclass ``ValueError`` so generic code can catch them too.
"""


class HelpersError(Exception):
    """Base class of every error helpers raises on purpose."""


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
