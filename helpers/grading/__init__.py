"""Ordinal grading (e.g. diabetic retinopathy 0–4) on top of the classification engine.

Grades are whole numbers 0..K-1 whose order matters: calling a grade 4 eye "0" is far worse than
calling it "3", which is why the task is judged by quadratic weighted kappa. The backbones, the
tf.data pipeline, augmentation, the two-phase training loop with checkpoints and resume, and the
model export all come from ``helpers.classification``; this package adds what is specific to
grades. Modules, one concern each: ``config`` (form fields), ``dataset`` (CSV with grades + the
doctor), ``preprocessing`` (fundus crop and local colour normalisation), ``ordinal`` (decoding,
threshold search, sampler weights; numpy only), ``heads`` (the three ordinal heads and losses,
Keras), ``engine`` (the grading ``TrainingTask`` for the classification training loop), ``predict``, ``quality``,
``reports``, ``workflow`` (the notebook's cells) and ``demo_data`` (synthetic ordinal data).
Only the modules about models load TensorFlow/Keras (``heads``, ``engine``, ``predict``, ``quality``,
``reports``); ``workflow`` imports them inside the cells that train or predict.
"""
