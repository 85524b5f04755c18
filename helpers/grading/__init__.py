"""Ordinal grading (e.g. diabetic retinopathy 0–4) on top of the classification engine.

Grades are whole numbers 0..K-1 whose order matters: calling a grade 4 eye "0" is far worse than
calling it "3", which is why the task is judged by quadratic weighted kappa. The backbones, the
tf.data pipeline, augmentation, the two-phase training loop with checkpoints and resume, and the
model export all come from ``helpers.classification``; this package adds what is specific to
grades. Modules, one concern each: ``config`` (form fields), ``dataset`` (CSV with grades + the
doctor), ``preprocessing`` (fundus crop and local colour normalisation), ``ordinal`` (decoding,
threshold search, sampler weights; numpy only), ``model`` (the three ordinal heads and losses,
Keras), ``train`` (the grading ``TrainingTask`` for the classification training loop), ``predict``, ``quality``,
``reports``, ``workflow`` (the notebook's cells) and ``demo_data`` (synthetic ordinal data), ``gradcam`` and ``browser`` (section 5's
explanations). The module names are the other tasks' names for the same concerns.
Only the modules about models load TensorFlow/Keras (``model``, ``train``, ``predict``, ``quality``,
``reports``); ``workflow`` imports them inside the cells that train or predict.
"""
