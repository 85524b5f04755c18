"""DL4Cells helpers: everything the form-driven notebooks call.

Modules are imported lazily by the notebooks (``import helpers.voc``); importing this
package does not import TensorFlow.
"""

# The one place the version is written: pyproject.toml reads it from here, the notebooks' install
# cell is generated with it (tools/notebook_cells.py), and every report and config.yaml records it.
__version__ = "0.2.0"
