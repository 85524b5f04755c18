"""Writes notebooks/classification.ipynb from the cell texts below (clean, no outputs).

Same skeleton as the detection notebook (sections 0–6, forms, presets, run folder); the cells
only call ``helpers.classification.workflow``. Run: .venv/bin/python tools/build_classification_notebook.py
"""

import pathlib

from notebook_cells import code, markdown, model_zoo_cells, run_folder_form, save, settings_form, setup_cells, which_sections

from helpers.classification.config import ClassificationConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]

markdown("""
# Classify cells — DL4Cells

This notebook trains an **image classifier** on your own labelled images (for example white blood
cell types), checks how good it is on images it has never seen, and uses it on new images. You fill
in forms and press ▶ on each cell, from top to bottom; you never need to edit code.

## 0. Before you start

**What classification is.** A classifier gives every image **one label** (e.g. `Neutrophil`,
`Lymphocyte`) and a *score* between 0 and 1 for every class. Each image should show one object
(e.g. one cell cropped from a smear). To find and box many cells in a large image, use the
detection notebook instead.

**How it learns.** The notebook starts from a network already trained on ImageNet (1.3 million
everyday photos; EfficientNet, EfficientNetV2, MobileNetV3 or ResNet50 from `keras.applications`).
First only a new final layer learns your classes (the network is frozen); then the top layers of
the network are fine-tuned to your images, as in the published white-blood-cell classifiers
(EfficientNetV2-S and -B0 on PBC/BloodMNIST images). Rare classes are given more weight, and the
images are flipped, rotated, zoomed and shifted at random so that the network sees new variants
every epoch (your files are never changed).

**The data it expects.** Either
- an images folder with **one subfolder per class** (`images/Neutrophil/*.jpg`,
  `images/Lymphocyte/*.jpg`, ...), or
- an images folder plus a **CSV file** with the columns `filename,label` (and optionally `group`,
  e.g. the patient or slide each image comes from: images of one group are never split between
  training and validation, so the validation figures are not inflated by near-identical images).

PNG, JPEG, BMP or TIFF (8- or 16-bit, grey or colour), any size. Keep some labelled images
**apart** in a second folder of the same layout: section 5 measures the model on them. Figures
measured on images the model trained on are not evidence.

**How many images.** As a rule of thumb at least 50–100 images per class; a class with a handful
of images will be classified unreliably whatever the notebook does. The data check (section 3)
counts them, and finds unreadable files and identical images filed under two labels.

**What you get.** Everything is written into one *run folder* `<model_path>/<model_name>/` on your
Drive: the settings (`config.yaml`), the split (`split.json`), the training curves
(`history.csv`, `plots/`), checkpoints, the exported model (`exported_model/classifier.keras` and
`label_map.json`), a **training report PDF**, a **quality-control report PDF**, the
predictions and, from cell 5.3, the model as a BioImage Model Zoo package (`bioimageio/`) to share.
Your own folders are never changed.

**If Colab disconnects**, run the notebook again from the top with the same `model_name`: training
resumes after the last finished epoch.
""" + which_sections("classifier", "classify") + """
**How to cite.** The backbone's paper (Tan & Le 2019/2021 for EfficientNet, Howard et al. 2019 for
MobileNetV3, He et al. 2016 for ResNet), Keras, scikit-learn, and von Chamier et al., *Democratising
deep learning for microscopy with ZeroCostDL4Mic*, Nat. Commun. 12, 2276 (2021), whose notebooks
this one follows. The methods paragraph in the training report is written for you.
""")

markdown("""
## 1. Your settings and the installation

### 1.1 Your data and model
Fill in the folders. On Colab, your Google Drive appears as `/content/gdrive/MyDrive/` (section 2
connects it). Choose `preset = default` for a real training run, or `quick` for a short test run
(a few minutes, small images, 2 epochs from scratch) that checks that every step runs; its model
has barely learned, so judge nothing by its numbers.
To try the notebook first, choose an `Example_dataset`: cell 2.1 downloads it and uses its folders
instead of the ones above. Every setting shows the value the `default` preset uses
(`number_of_epochs` 40); `quick` replaces those you leave as they are by its own (2 epochs, small
images, from scratch), and a value you change is always used. The data check (3.1) prints a table
of every setting that differs from the preset.
""")

code("""
#@title 1.1 Your data and model { display-mode: "form" }
#@markdown **Training data**: one subfolder per class, or an images folder plus a CSV (filename,label[,group]).
Training_images = "/content/gdrive/MyDrive/cells/classes" #@param {type:"string"}
Labels_csv = "" #@param {type:"string"}
#@markdown **Test data for quality control** (same layout; images the model never trains on; empty = the validation images, which is optimistic):
Test_images = "" #@param {type:"string"}
Test_labels_csv = "" #@param {type:"string"}
#@markdown **New images to classify** (section 6; empty = the test images):
Prediction_images = "" #@param {type:"string"}
""" + run_folder_form("cells_classifier", ClassificationConfig, "classification"), tags=("parameters",))

setup_cells("classification")

markdown("""
## 3. Data, split, augmentation and backbone

### 3.1 Settings, and a check of your data
The form of this cell shows the value every setting takes with the `default` preset; the
**expert settings** at its bottom can stay as they are. Numbers accept a decimal comma (`0,001`).
The settings that differ from the preset are printed below; all of them are saved in `config.yaml`.

- **backbone**, **pretrained**: the network, and whether it starts from ImageNet weights
  (`imagenet`, recommended: downloaded once into a cache, checksum in the report) or from scratch
  (`none`: needs far more images and epochs). EfficientNet-B0 is a good start; EfficientNetV2-S is
  more accurate and slower; MobileNetV3-Small is the fastest. **continue_from**: the run folder of a
  classifier you trained before, to train it further on this data (same classes).
- **image_size**: images are resized to this square size in pixels (e.g. 96 for small cell crops,
  224 for larger images). Larger sees more detail but is slower.
- **head_epochs**: phase 1, epochs in which only the new final layer learns. **fine_tune_layers**:
  phase 2, how many layers at the top of the network learn too (the published blood-cell models
  kept the first 120 layers of EfficientNet frozen); batch-normalisation layers stay frozen.
- **batch_size**: images per training step (lower it if the GPU runs out of memory).
- **learning_rate**, **fine_tune_learning_rate**: step sizes of phase 1 and phase 2; **optimizer**:
  `adam`, `adamw` or `lion` (use a 3–10× smaller learning rate with Lion).
- **label_smoothing**: keeps the model from becoming over-confident (0.1 is usual).
- **class_balance**: `class_weights` gives images of rare classes more weight; `balanced_sampling`
  shows every class equally often.
- **validation_fraction**: share of your images held out to choose the best epoch (0.15 = 15 %).
- **augmentation**: `basic` = random flips, rotations, zoom, shifts and contrast; `randaugment` and
  `augmix` add those stronger policies; **mixing**: `cutmix` or `mixup` combine pairs of images
  and their labels. The preview in 3.2 shows what the network will see.

The data check lists every problem it finds, with what to do about it, shows the number of images
per class and examples of each, and splits your images into training and validation sets
(stratified by class; saved as `split.json`; your files stay where they are).
""")

code("""
#@title 3.1 Check the data and split it
""" + settings_form(ClassificationConfig,
                    everyday=("pretrained", "continue_from", "image_size", "validation_fraction",
                              "augmentation", "class_balance"),
                    expert=("backbone", "head_epochs", "fine_tune_layers", "batch_size", "learning_rate",
                            "fine_tune_learning_rate", "optimizer",
                            "label_smoothing", "mixing")) + """
import helpers.classification.workflow as workflow
session = workflow.start(
    preset, images_dir=Training_images, labels_csv=Labels_csv, model_path=model_path, model_name=model_name,
    epochs=number_of_epochs, backbone=backbone, pretrained=pretrained, continue_from=continue_from,
    image_size=image_size, head_epochs=head_epochs, fine_tune_layers=fine_tune_layers, batch_size=batch_size,
    learning_rate=learning_rate, fine_tune_learning_rate=fine_tune_learning_rate, optimizer=optimizer,
    label_smoothing=label_smoothing, class_balance=class_balance, validation_fraction=validation_fraction,
    augmentation=augmentation, mixing=mixing)
dataset = session.check_data()
""")

markdown("""
### 3.2 Augmentation preview
Deep networks need many examples. During training every image is transformed at random each time
it is shown (flips, rotations, zoom, shifts, contrast, and the policies chosen in 3.1); nothing is
written next to your images. The preview shows one training image of each class (left) and
augmented versions of it: check that the cells still look like cells of that class.
""")

code("""
#@title 3.2 Preview the augmentation
augmentation_preview = session.preview_augmentation()
""")

markdown("""
### 3.3 Backbone and pretrained weights
Starting from ImageNet weights usually needs far fewer labelled images than training from
scratch. The weights are the ones `keras.applications` publishes; they are downloaded once into a
cache on your Drive and their checksum is recorded in the report. Without internet this cell stops
with an error: choose `pretrained = none` in 3.1 to train from scratch instead.
""")

code("""
#@title 3.3 Prepare the backbone
pretrained_weights = session.prepare_backbone()
""")

markdown("""
## 4. Train
A progress bar shows each epoch; the curves are redrawn after every epoch: the **loss** should go
down, and the validation **accuracy** and **balanced accuracy** (the mean over classes of the share
of each class recognised, so that a rare class counts as much as a frequent one) should go up. The
model of the epoch with the best validation balanced accuracy is kept. A checkpoint is saved after
every epoch, so if Colab disconnects, run the notebook again with the same `model_name` and
training resumes. At the end the model is exported and the **training report PDF** is written into
the run folder.
""")

code("""
#@title 4. Train the model
training = session.train()
""")

markdown("""
## 5. Quality control
The model classifies the **test** images (or, if you gave none, the validation images) and its
answers are compared with your labels using scikit-learn:

- **accuracy**: share of images classified correctly (dominated by the frequent classes);
- **balanced accuracy**: the mean over classes of the share of each class found; chance level is
  1 / number of classes;
- **precision** (how many images called X are X), **recall** (how many X were found) and **F1**
  per class, and their macro means; the **confusion matrix** shows which classes are mistaken for
  which; **ROC AUC** how well the scores rank each class above the others (0.5 = chance).

A gallery shows the mistakes the model was most sure of (often labelling errors worth checking),
and **Grad-CAM** images show which part of a picture drove the decision. Leave `QC_model_folder`
empty to check the model of this run, or give the run folder of another model; `Grad_CAM_images`
takes file names (as in `qc/labels.csv`, separated by commas) to explain, or empty to choose some.
""")

code("""
#@title 5.1 Measure the model on the test images
QC_model_folder = "" #@param {type:"string"}
Grad_CAM_images = "" #@param {type:"string"}
import helpers.classification.workflow as workflow
qc = workflow.quality_control(model_path, model_name, Test_images, Test_labels_csv, other_model_folder=QC_model_folder, gradcam_images=Grad_CAM_images)
qc.show()
""")

code("""
#@title 5.2 Browse the test images: true and predicted class, scores and Grad-CAM
browser = qc.browse()
""")

model_zoo_cells("classifier", "classification")

markdown("""
## 6. Classify new images
Classifies every image in `Prediction_images` (subfolders included; the test images if that is
empty) and writes `predictions.csv` into a results folder: one row per image with its file name,
the predicted class and the score of every class. Leave `Results_folder` empty to write into the
run folder. Leave `Prediction_model_folder` empty to use the model of the run folder of 1.1, or give
the run folder of another model.
""")

code("""
#@title 6. Predict
Results_folder = "" #@param {type:"string"}
Prediction_model_folder = "" #@param {type:"string"}
import helpers.classification.workflow as workflow
predictions = workflow.predict(model_path, model_name, Prediction_images or Test_images, Results_folder, other_model_folder=Prediction_model_folder)
predictions.show(count=4)
""")

print(save(ROOT / "notebooks" / "classification.ipynb"))
