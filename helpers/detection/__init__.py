"""Object detection (boxes with a class and a score) with RetinaNet through TF Model Garden (``tf_keras``).

Modules, one concern each, named as in ``helpers.classification`` and ``helpers.grading``:
``config`` (form fields), ``dataset`` (the data check, "doctor": VOC / COCO / BBBC041 pairing,
every problem listed), ``augmentation`` (augmented copies written into the run folder),
``backbones`` (registry and COCO weights), ``model``, ``train`` (loop, checkpoints, resume),
``predict`` (a folder of new images), ``quality`` (section 5), ``reports`` (PDFs), ``workflow``
(the notebook's cells) and ``demo_data`` (synthetic data); and detection's own ``records``
(TFRecords), ``inference``, ``export``, ``outputs`` (file formats, counts, overlays), ``preprocess``
and ``annotation_loop``. ``config``, ``dataset``, ``augmentation``, ``outputs``, ``demo_data`` and
``workflow`` do not import TensorFlow.
"""
