"""Image classification (one label per image) with Keras 3 ``keras.applications`` backbones.

Modules, one concern each: ``config`` (form fields), ``dataset`` (reading + doctor), ``plots``,
``backbones`` (registry and ImageNet weights), ``pipeline`` (tf.data from files),
``augmentation``, ``model``, ``train`` (two phases, checkpoints, resume), ``gradcam``,
``predict`` (export, reload, predict a folder), ``quality`` (section 5) with ``browser``,
``reports`` (PDFs), ``workflow`` (the notebook's cells) and ``demo_data`` (synthetic data).
``config``, ``dataset``, ``plots``, ``backbones``, ``demo_data`` and ``workflow`` do not import
TensorFlow; the others are about models and do.
"""
