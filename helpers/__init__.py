"""DL4Cells helpers: everything the form-driven notebooks call.

Modules are imported lazily by the notebooks (``import helpers.voc``); importing this
package does not import TensorFlow.
"""

__version__ = "0.1.0"
