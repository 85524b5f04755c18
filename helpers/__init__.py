"""DL4Cells helpers: everything the form-driven notebooks call.

Modules are imported lazily by the notebooks (``import helpers.voc``); importing this
package does not import TensorFlow.
"""

# The one place the version is written: pyproject.toml reads it from here, the notebooks' install
# cell is generated with it (tools/notebook_cells.py), and every report and config.yaml records it.
__version__ = "0.2.0"

# Before any helpers module can import TensorFlow: keep its C++ log lines and one harmless protobuf notice out of
# the notebooks (helpers/quiet.py says exactly what is hidden and why).
from helpers import quiet as _quiet  # noqa: E402

_quiet.quiet_library_logs()
