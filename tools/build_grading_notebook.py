"""Writes notebooks/grading.ipynb from the cell texts below (clean, no outputs).

Same skeleton as the detection and classification notebooks (sections 0–6, forms, presets, run
folder); the cells only call ``helpers.grading.workflow``. Run: .venv/bin/python tools/build_grading_notebook.py
"""

import pathlib

from notebook_cells import code, markdown, model_zoo_cells, run_folder_form, save, settings_form, setup_cells, which_sections

from helpers.grading.config import GradingConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]

markdown("""
# Grade disease severity — DL4Cells

This notebook trains a network to give every image a **severity grade** on an ordered scale, for
example the five grades of diabetic retinopathy in retinal fundus photographs (0 = no DR,
1 = mild, 2 = moderate, 3 = severe, 4 = proliferative). It checks how good the model is on images
it has never seen, and uses it on new images. You fill in forms and press ▶ on each cell, from top
to bottom; you never need to edit code.

## 0. Before you start

**What grading is, and why it is not plain classification.** Grades are *ordered*: calling a
grade-4 eye "grade 3" is a small mistake, calling it "grade 0" is a dangerous one. The notebook
therefore uses an **ordinal** model and judges it by the field's standard figure, the **quadratic
weighted kappa**: 1 means perfect agreement with your grades, 0 means no better than chance, and a
mistake costs the square of its distance in grades. Clinically, what often matters most is
**referable disease** (for diabetic retinopathy: grade 2 or worse); the quality-control section
reports its sensitivity, specificity and ROC curve.

**How it learns.** The notebook starts from a network already trained on ImageNet (EfficientNet,
MobileNetV3 or ResNet50 from `keras.applications`) and fine-tunes it to your grades, as in the
published diabetic-retinopathy graders (EfficientNet with a balanced sampler against the heavy
imbalance of grade 0, and RandAugment). You choose the **ordinal head**: `regression` (one number
per image; the cut-offs between grades are then tuned on the validation images for the best
kappa), `cumulative` (CORAL: one "is the grade above k?" output per step of the scale) or
`softmax` (plain classification, for comparison). For fundus photographs the images are first
**cropped to the retina disc** and their **colours normalised locally** (which evens out the
lighting and makes small lesions stand out); switch both off for other kinds of images.

**The data it expects.** An images folder (PNG, JPEG, BMP or TIFF, any size) and a **CSV file**
with one row per image: a column with the file name (`filename`), a column with the grade
(`grade`, whole numbers 0 to K−1) and, if you have it, a column with the **patient ID** (or
slide, or animal). Give the patient column whenever one patient contributes several images (e.g.
both eyes): all images of a patient then stay together in training or in validation, otherwise
the validation figures are inflated by near-identical images of the same person. Keep some graded
patients **apart** in a second folder with its own CSV: section 5 measures the model on them.

**How many images.** Hundreds per grade for a useful fundus grader; the rare severe grades limit
what any model can learn. The data check (section 3) counts the images per grade and finds
unreadable files, missing files, grades out of range and identical images filed under two grades.

**What you get.** Everything is written into one *run folder* `<model_path>/<model_name>/` on your
Drive: the settings (`config.yaml`), the split (`split.json`), the training curves
(`history.csv` with the validation kappa, `plots/`), checkpoints, the exported model
(`exported_model/`), a **training report PDF**, a **quality-control report PDF** and the
predictions (`predictions.csv`: grade and a score per grade) and, from cell 5.3, the model as a
BioImage Model Zoo package (`bioimageio/`) to share. Your own folders are never changed.

**If Colab disconnects**, run the notebook again from the top with the same `model_name`: training
resumes after the last finished epoch.
""" + which_sections("grader", "grade") + """
**How to cite.** The backbone's paper (Tan & Le 2019 for EfficientNet), Cao et al. 2020 for CORAL,
Graham 2015 for the colour normalisation, Keras, scikit-learn, and von Chamier et al.,
*Democratising deep learning for microscopy with ZeroCostDL4Mic*, Nat. Commun. 12, 2276 (2021),
whose notebooks this one follows. The methods paragraph in the training report is written for you.
""")

markdown("""
## 1. Your settings and the installation

### 1.1 Your data and model
Fill in the folders and the CSV files. On Colab, your Google Drive appears as
`/content/gdrive/MyDrive/` (section 2 connects it). `num_grades` is the number of grades of your
scale (5 for diabetic retinopathy: grades 0–4); `referable_threshold` the lowest grade that counts
as referable disease (2 for diabetic retinopathy). Name the CSV's columns if they are not
`filename` and `grade`; leave `group_column` empty if you have no patient IDs. Choose
`preset = default` for a real training run, or `quick` for a short test run (a few minutes, small
images, 2 epochs from scratch) that checks that every step runs; its model has barely learned, so
judge nothing by its numbers.
To try the notebook first, choose an `Example_dataset`: cell 2.1 downloads it and uses its folders
instead of the ones above. Every setting shows the value the `default` preset uses
(`number_of_epochs` 40); `quick` replaces those you leave as they are by its own (2 epochs, small
images, from scratch), and a value you change is always used. The data check (3.1) prints a table
of every setting that differs from the preset.
""")

code("""
#@title 1.1 Your data and model { display-mode: "form" }
#@markdown **Training data**: an images folder and a CSV with one row per image.
Training_images = "/content/gdrive/MyDrive/fundus/images" #@param {type:"string"}
Labels_csv = "/content/gdrive/MyDrive/fundus/grades.csv" #@param {type:"string"}
filename_column = "filename" #@param {type:"string"}
grade_column = "grade" #@param {type:"string"}
group_column = "patient_id" #@param {type:"string"}
num_grades = 5 #@param {type:"integer"}
referable_threshold = 2 #@param {type:"integer"}
#@markdown **Test data for quality control** (same CSV columns; patients the model never trains on; empty = the validation images, which is optimistic):
Test_images = "" #@param {type:"string"}
Test_labels_csv = "" #@param {type:"string"}
#@markdown **New images to grade** (section 6; empty = the test images):
Prediction_images = "" #@param {type:"string"}
""" + run_folder_form("fundus_grader", GradingConfig, "grading"), tags=("parameters",))

setup_cells("grading")

markdown("""
## 3. Data, split, preprocessing and backbone

### 3.1 Settings, and a check of your data
The form of this cell shows the value every setting takes with the `default` preset; the
**expert settings** at its bottom can stay as they are. Numbers accept a decimal comma (`0,001`).
The settings that differ from the preset are printed below; all of them are saved in `config.yaml`.

- **head**: `regression` (recommended; thresholds between grades tuned on the validation images
  for the best kappa), `cumulative` (CORAL) or `softmax` (plain classification, for comparison).
- **backbone**, **pretrained**: the network, and whether it starts from ImageNet weights
  (`imagenet`, recommended: downloaded once into a cache, checksum in the report) or from scratch
  (`none`: needs far more images and epochs). **continue_from**: the run folder of a grader you
  trained before, to train it further on this data (same head, `num_grades`, image size and
  preprocessing; the report says which model it continued).
- **image_size**: images are resized to this square size in pixels after the crop (fundus graders
  use 384–512; larger sees smaller lesions but is slower).
- **crop_to_disc**, **colour_normalisation**: the fundus preprocessing (the preview in 3.2 shows
  it); untick both for images that are not fundus photographs.
- **class_balance**: `balanced_sampling` draws every grade equally often (or in proportion to
  **sampling_multipliers**, one number per grade, e.g. `1,1,1,2,2` to show the severe grades
  twice as often); `class_weights` gives images of rare grades more weight in the loss.
- **head_epochs**, **fine_tune_layers**: phase 1 trains only the new head; phase 2 also the top
  layers of the network (batch-normalisation layers stay frozen).
- **batch_size**, **learning_rate**, **fine_tune_learning_rate**, **optimizer**: as in the
  classification notebook; lower the batch size if the GPU runs out of memory.
- **validation_fraction**: share of the patients held out to choose the best epoch and the
  thresholds (0.15 = 15 %).
- **augmentation**: `basic` = random flips, rotations, zoom, shifts and contrast; `randaugment`
  adds that stronger policy (used by the published graders).

The data check lists every problem it finds with what to do about it, shows the number of images
per grade and examples of each, and splits your images into training and validation sets
(stratified by grade and grouped by patient; saved as `split.json`; your files stay where they are).
""")

code("""
#@title 3.1 Check the data and split it
""" + settings_form(GradingConfig,
                    everyday=("crop_to_disc", "colour_normalisation", "pretrained", "continue_from",
                              "image_size", "validation_fraction",
                              "class_balance", "sampling_multipliers"),
                    expert=("head", "backbone", "head_epochs", "fine_tune_layers", "batch_size",
                            "learning_rate", "fine_tune_learning_rate",
                            "optimizer", "augmentation")) + """
import helpers.grading.workflow as workflow
session = workflow.start(
    preset, images_dir=Training_images, labels_csv=Labels_csv, filename_column=filename_column,
    grade_column=grade_column, group_column=group_column, num_grades=num_grades,
    referable_threshold=referable_threshold, model_path=model_path, model_name=model_name, epochs=number_of_epochs,
    head=head, backbone=backbone, pretrained=pretrained, continue_from=continue_from, image_size=image_size,
    crop_to_disc=crop_to_disc,
    colour_normalisation=colour_normalisation, class_balance=class_balance, sampling_multipliers=sampling_multipliers,
    head_epochs=head_epochs, fine_tune_layers=fine_tune_layers, batch_size=batch_size, learning_rate=learning_rate,
    fine_tune_learning_rate=fine_tune_learning_rate, optimizer=optimizer, validation_fraction=validation_fraction,
    augmentation=augmentation)
dataset = session.check_data()
""")

markdown("""
### 3.2 Preprocessing and augmentation preview
The first figure shows one training image of each grade: the original, after the crop to the
retina disc, and as the network sees it (resized and, if chosen, colour-normalised). Check that
the crop keeps the whole disc and that lesions stay visible. The second figure shows random
variants made during training (flips, rotations, zoom, shifts, contrast and the policy chosen in
3.1); nothing is written next to your images.
""")

code("""
#@title 3.2 Preview the preprocessing and the augmentation
preprocessing_preview = session.preview_preprocessing()
""")

markdown("""
### 3.3 Backbone and pretrained weights
Starting from ImageNet weights usually needs far fewer graded images than training from scratch.
The weights are the ones `keras.applications` publishes; they are downloaded once into a cache
and their checksum is recorded in the report. Without internet this cell stops with an error:
choose `pretrained = none` in 3.1 to train from scratch instead.
""")

code("""
#@title 3.3 Prepare the backbone
pretrained_weights = session.prepare_backbone()
""")

markdown("""
## 4. Train
A progress bar shows each epoch; the curves are redrawn after every epoch: the **loss** should go
down, and the validation **quadratic weighted kappa** should go up (for the regression head it is
measured with the thresholds tuned on the validation images, so it is a little optimistic). The
model of the epoch with the best validation kappa is kept. A checkpoint is saved after every
epoch, so if Colab disconnects, run the notebook again with the same `model_name` and training
resumes. At the end the model is exported and the **training report PDF** is written into the run
folder.
""")

code("""
#@title 4. Train the model
training = session.train()
""")

markdown("""
## 5. Quality control
The model grades the **test** images (or, if you gave none, the validation images) and its grades
are compared with yours using scikit-learn:

- **quadratic weighted kappa** (the headline figure), **accuracy** (exact grade) and the **mean
  absolute error** in grades;
- per grade: **sensitivity** (share of the images of that grade found) and **specificity**; the
  **confusion matrix** shows which grades are mistaken for which;
- **referable disease** (grade ≥ `referable_threshold`): sensitivity, specificity and the **ROC
  curve** with its area (AUC; 0.5 = chance, 1 = perfect), the view a screening programme uses.

A gallery shows the images whose predicted grade is furthest from yours (often worth a second
look), and **Grad-CAM** images show which parts of a picture raised the grade: red areas pushed
the model's *expected grade* (the average of the grades weighted by their scores; for the
regression head its output) up, so an image with nothing that raises the grade has an empty map.
Leave `QC_model_folder` empty to check the model of this run, or give the run folder of another
grading model; `Grad_CAM_images` takes file names (as in `qc/labels.csv`, separated by commas) to
explain, or empty to choose some. The same figures come from the command
`python -m helpers.qc grading --labels qc/labels.csv --predictions qc/predictions.csv`.
""")

code("""
#@title 5.1 Measure the model on the test images
QC_model_folder = "" #@param {type:"string"}
Grad_CAM_images = "" #@param {type:"string"}
import helpers.grading.workflow as workflow
qc = workflow.quality_control(model_path, model_name, Test_images, Test_labels_csv, other_model_folder=QC_model_folder, gradcam_images=Grad_CAM_images)
qc.show()
""")

code("""
#@title 5.2 Browse the test images: true and predicted grade, scores and Grad-CAM of the expected grade
browser = qc.browse()
""")

model_zoo_cells("grader", "grading")

markdown("""
## 6. Grade new images
Grades every image in `Prediction_images` (subfolders included; the test images if that is empty)
and writes `predictions.csv` into a results folder: one row per image with its file name, the
predicted grade and a score per grade (the scores of a row sum to 1). Leave `Results_folder` empty
to write into the run folder. Leave `Prediction_model_folder` empty to use the model of the run folder of
1.1, or give the run folder of another model.
""")

code("""
#@title 6. Predict
Results_folder = "" #@param {type:"string"}
Prediction_model_folder = "" #@param {type:"string"}
import helpers.grading.workflow as workflow
predictions = workflow.predict(model_path, model_name, Prediction_images or Test_images, Results_folder, other_model_folder=Prediction_model_folder)
predictions.show(count=4)
""")

print(save(ROOT / "notebooks" / "grading.ipynb"))
