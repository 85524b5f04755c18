"""Writes notebooks/detection_retinanet.ipynb from the cell texts below (clean, no outputs).

Editing the notebook in Jupyter/Colab is fine too; this script is how it was first written, and
keeps a reviewable plain-text copy of every cell. Run: .venv/bin/python tools/build_detection_notebook.py
"""

import pathlib

from notebook_cells import code, markdown, run_folder_form, save, settings_form, setup_cells, which_sections

from helpers.detection.config import DetectionConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]


markdown("""
# Detect cells with RetinaNet — DL4Cells

This notebook trains a **cell detector** on your own annotated images, checks how good it is on
images it has never seen, and uses it on new images. You fill in forms and press ▶ on each
cell, from top to bottom; you never need to edit code.

## 0. Before you start

**What detection is.** A detector finds every object of interest in an image and draws a
*box* around it with a *class* (e.g. `RBC`, `WBC`, `Platelets`) and a *confidence score*
between 0 and 1. This notebook uses **RetinaNet** (Lin et al. 2017) as implemented in the
TensorFlow Model Garden.

**The data it expects.** An images folder and its annotations:
- an images folder: PNG, JPEG, BMP or TIFF (8- or 16-bit, grey or colour), any size;
- annotations, in one of three forms (the data check says which one it found):
  - a folder with one PASCAL VOC `.xml` file per image, **with the same file name**
    (`cell_001.png` ↔ `cell_001.xml`), made with **LabelImg**, **CVAT** (export "PASCAL VOC
    1.1") or **Roboflow** (export "Pascal VOC"); an `.xml` without boxes is a valid image of
    background only;
  - one **COCO** `.json` file (CVAT, Roboflow and Label Studio "COCO" export); crowd regions
    (`iscrowd`) are left out of training and ignored when scoring;
  - one **BBBC041** `.json` file (the malaria blood-smear set's format); its `difficult` cells
    are left out of training and ignored when scoring.

Keep a few annotated images **apart** in a second pair of folders: section 5 measures the model
on them. Numbers measured on images the model trained on are not evidence.

**How many images.** As a rule of thumb, at least 50 annotated images and a few hundred boxes per
class; rare classes need more. The data check (section 3) counts them for you.

**What you get.** Everything is written into one *run folder* `<model_path>/<model_name>/` on your
Drive: the settings (`config.yaml`), the list of training and validation images (`split.json`),
the training curves (`history.csv`, `plots/`), checkpoints, the exported model, a
**training report PDF**, a **quality-control report PDF** and the predictions. Your own folders
are never changed: nothing is moved, renamed or deleted there.

**If Colab disconnects**, run the notebook again from the top with the same `model_name`:
training resumes from the last finished epoch.
""" + which_sections("model", "detect cells in") + """
**How to cite.** Lin, Goyal, Girshick, He, Dollár, *Focal Loss for Dense Object Detection*, ICCV
2017; the TensorFlow Model Garden (github.com/tensorflow/models); von Chamier et al.,
*Democratising deep learning for microscopy with ZeroCostDL4Mic*, Nat. Commun. 12, 2276 (2021),
whose notebooks this one follows. The methods paragraph in the training report is written for you.
""")

markdown("""
## 1. Your settings and the installation

### 1.1 Your data and model
Fill in the folders. On Colab, your Google Drive appears as `/content/gdrive/MyDrive/` (section 2
connects it). To try the notebook first, choose an `Example_dataset`: cell 2.1 downloads it and uses
its folders instead of the ones above. Choose `preset = default` for a real training run, or `quick`
for a short test run (a few minutes: 2 epochs of a small network trained from scratch) that checks
that every step runs, from the data check to the reports. A quick model has barely learned (on the
BCCD blood-cell images it finds no cells: mAP50 0.000), so judge nothing by its numbers. Every setting shows the
value the `default` preset uses (`number_of_epochs` 50); `quick` replaces those you leave as they
are by its own (2 epochs, smaller images, from scratch), and a value you change is always used. The
data check (3.1) prints a table of every setting that differs from the preset.

**Annotations** (training and test) can be a folder of PASCAL VOC `.xml` files, or one `.json` file:
**COCO** (what CVAT, Roboflow and Label Studio export as "COCO"; `iscrowd` regions are not trained
on and are ignored by quality control) or **BBBC041** (the malaria blood-smear set; its `difficult`
cells are treated the same way). The format is detected from the file and stated by the data check.
""")

code("""
#@title 1.1 Your data and model { display-mode: "form" }
#@markdown **Training data**: an images folder, and a folder of PASCAL VOC .xml files or one COCO / BBBC041 .json file.
Training_images = "/content/gdrive/MyDrive/cells/images" #@param {type:"string"}
Training_annotations = "/content/gdrive/MyDrive/cells/annotations" #@param {type:"string"}
#@markdown **Test data for quality control** (images the model never trains on; empty = use the validation images, which is optimistic):
Test_images = "" #@param {type:"string"}
Test_annotations = "" #@param {type:"string"}
#@markdown **New images to detect cells in** (section 6; empty = the test images):
Prediction_images = "" #@param {type:"string"}
""" + run_folder_form("cells_retinanet", DetectionConfig, "detection"), tags=("parameters",))

setup_cells("detection")

markdown("""
## 3. Data, split, augmentation and backbone

### 3.1 Settings, and a check of your data
The form of this cell shows the value every setting takes with the `default` preset; the
**expert settings** at its bottom can stay as they are. Numbers accept a decimal comma (`0,001`).
The settings that differ from the preset are printed below; all of them are saved in `config.yaml`.

- **batch_size**: images per training step (lower it if the GPU runs out of memory).
- **learning_rate**: step size of the optimiser (Adam); with a warm-up then cosine decay.
- **validation_fraction**: share of your annotated images held out to watch training (0.15 = 15 %).
- **image_size**: the side, in pixels, of the square the network looks at (a *window*; a multiple of 128). Larger windows see more context at once but are slower and need more GPU memory.
- **pixel_scale**: how much your images are shrunk (or enlarged) before the network sees them: `1` keeps every pixel, `0.5` halves the width and height. Leave it on `auto`: the data check measures your annotated boxes and picks the scale at which the smallest kind of object is still large enough for the network (about 23 pixels), and says why. An image larger than one window at that scale is **cut into overlapping windows** (tiles), each window is detected, and the boxes are put back together, so an image from a large camera chip or a whole scan is seen at the same scale as your training images instead of being shrunk until the cells vanish. Section 6 uses the same scale.
- **classification / box loss weights**, **focal alpha / gamma**: how the loss balances class errors, box errors and easy background; raise `focal_gamma` or lower `focal_alpha` if a frequent class drowns the rare ones.
- **score_threshold**: detections less confident than this are not reported (QC states it next to every number).
- **remove_background**: blanks the background by Otsu thresholding (helps on some blood smears).
- **augmentation_factor** (3.2): how many transformed copies of each training image to add (1 = none); **rare_class_boost** gives images with rare classes more copies.
- **backbone**, **pretrained** (3.3): the feature extractor, and whether to start from weights trained on the COCO photo dataset (`coco`, recommended) or from scratch (`none`). **continue_from**: the run folder of a model you trained before, to train it further on this data.

The data check then states the annotation format it found (VOC folder, COCO or BBBC041 JSON),
lists every problem it finds in your data, with what to do about it, shows
statistics and one image with its boxes, and splits your images into training and validation sets
(the split is saved as `split.json`; your files stay where they are).
""")

code("""
#@title 3.1 Check the data and split it
""" + settings_form(DetectionConfig, everyday=("pixel_scale", "validation_fraction", "augmentation_factor",
                                               "remove_background", "score_threshold", "pretrained", "continue_from"),
                    expert=("backbone", "batch_size", "learning_rate", "image_size", "classification_loss_weight",
                            "box_loss_weight", "focal_alpha", "focal_gamma", "rare_class_boost")) + """
import helpers.detection.workflow as workflow
session = workflow.start(
    preset, images_dir=Training_images, annotations_dir=Training_annotations, model_path=model_path,
    model_name=model_name, epochs=number_of_epochs, batch_size=batch_size, learning_rate=learning_rate,
    validation_fraction=validation_fraction, image_size=image_size, pixel_scale=pixel_scale,
    classification_loss_weight=classification_loss_weight, box_loss_weight=box_loss_weight,
    focal_alpha=focal_alpha, focal_gamma=focal_gamma, score_threshold=score_threshold,
    remove_background=remove_background, augmentation_factor=augmentation_factor,
    rare_class_boost=rare_class_boost, backbone=backbone, pretrained=pretrained, continue_from=continue_from)
dataset = session.check_data()
""")

markdown("""
### 3.2 Augmentation
Deep networks need many examples. *Augmentation* adds transformed copies of your training images
(flips, rotations, small zooms, brightness and contrast changes, blur, noise) with their boxes
moved accordingly. The copies are written into the run folder, never next to your images. The
preview shows originals and copies with their boxes: check that the boxes still fit the cells.
""")

code("""
#@title 3.2 Make augmented copies (if augmentation_factor > 1) and preview them
augmentation = session.augment()
""")

markdown("""
### 3.3 Backbone and pretrained weights
Starting from weights trained on COCO (330,000 everyday photos) usually needs far fewer annotated
images than training from scratch. The weights are downloaded once into a cache on your Drive and
their checksum is recorded in the report.
""")

code("""
#@title 3.3 Prepare the backbone
pretrained_weights = session.prepare_backbone()
""")

markdown("""
## 4. Train
A progress bar shows images per second and the time left; the curves are redrawn after every epoch:
the **loss** should go down, and the **validation mAP** (how well boxes on the validation images
match the annotations; 1 is perfect) should go up. A checkpoint is saved after every epoch, so if
Colab disconnects, run the notebook again with the same `model_name` and training resumes. At the
end the model is exported and the **training report PDF** is written into the run folder.
""")

code("""
#@title 4. Train the model
training = session.train()
""")

markdown("""
## 5. Quality control
The model is run on the **test** images (or, if you gave none, the validation images) and its
boxes are compared with your annotations using the COCO evaluation (pycocotools):

- **mAP50**: average precision when a box counts as correct if it overlaps an annotated box of the
  same class by at least 50 % (intersection over union, IoU ≥ 0.5);
- **mAP50-95**: the same averaged over stricter overlaps from 0.5 to 0.95;
- **precision** (how many detections are real), **recall** (how many real cells were found) and
  **F1** at the stated score threshold; the confusion matrix shows which classes are mistaken for
  which, its last column the cells missed and its last row the false alarms; the F1 curve shows
  which score threshold gives the best balance of found and false on these images (chosen on the
  same images, so optimistic);
- **counts**: how many cells of each class the model finds per image against how many you
  annotated: mean absolute error (cells per image), mean relative error, Pearson r, and a
  Bland–Altman plot whose *bias* says whether the model counts too many (> 0) or too few (< 0)
  and whose *95 % limits of agreement* say how far off one image's count can be. The score
  threshold that would give the best counts on these images is shown too: it was chosen on the
  same images, so its numbers are optimistic.

Every number is printed with the thresholds it was computed at. Leave `QC_model_folder` empty to
check the model of this run, or give the run folder of another model.
""")

code("""
#@title 5.1 Measure the model on the test images
QC_model_folder = "" #@param {type:"string"}
import helpers.detection.workflow as workflow
qc = workflow.quality_control(model_path, model_name, Test_images, Test_annotations, other_model_folder=QC_model_folder)
qc.show()
""")

code("""
#@title 5.2 Look at the test images: image, prediction and annotation side by side
browser = qc.browse()
""")

markdown("""
## 6. Detect cells in new images
Runs the model on every image of `Prediction_images` (or the test images if that is empty) and
writes, into a results folder: `predictions.csv` (one row per box), `counts.csv` (one row per
image: the number of cells of each class and in total, at the score threshold written on each row),
one VOC `.xml` per image (open them in LabelImg or CVAT to correct them and train again), a COCO
results `.json`, and images with the boxes drawn. The same boxes, with class and score, are written
for the tools you may look at your images in:

| Tool | File | How to open it |
|---|---|---|
| QuPath | `qupath/<image>.geojson` | open the image, then *File → Import objects from file* (or drag the file onto it) |
| Fiji / ImageJ | `imagej_rois/<image>.zip` | open the image, then drag the `.zip` onto Fiji (ROI Manager) |
| napari | `napari/<image>_shapes.csv` | open the image, then drag the `.csv` onto napari (a shapes layer) |
| Label Studio | `label_studio_tasks.json` + `label_studio_config.xml` | see 6.2: the boxes arrive as predictions to correct |

Images without a box get no QuPath, Fiji or napari file. Leave `Results_folder` empty to write into the run
folder. The first rows of `counts.csv` are shown below the images. Leave `Prediction_model_folder`
empty to use the model of the run folder of 1.1, or give the run folder of another model.

Images of any size are seen at the model's pixel scale (section 3.1): a large image is cut into
overlapping windows and a cell cut by a window edge is reported once. If your new images come from
another magnification, say so in `Object_size_ratio`: `2` if the cells look twice as large (in
pixels) as in your training images (e.g. a 40× instead of a 20× objective), `0.5` if half as large;
`1` means the same magnification. The value used is written into `prediction_settings.json`.

`counts.csv` counts **each object once** (`Count_each_object_once`): when the model puts boxes of two
classes on one cell (overlapping by more than half, IoU > 0.5), the cell is counted once, as the class
with the higher score. `predictions.csv` keeps every box.
""")

code("""
#@title 6. Predict
Results_folder = "" #@param {type:"string"}
Object_size_ratio = "1" #@param {type:"string"}
Prediction_model_folder = "" #@param {type:"string"}
Count_each_object_once = True #@param {type:"boolean"}
import helpers.detection.workflow as workflow
predictions = workflow.predict(model_path, model_name, Prediction_images or Test_images, Results_folder, other_model_folder=Prediction_model_folder, object_size_ratio=Object_size_ratio, count_each_object_once=Count_each_object_once)
predictions.show(count=4)
predictions.show_counts(rows=10)
""")

markdown("""
### 6.2 The annotation loop: which images to annotate next
Correcting boxes is much faster than drawing them. This cell ranks the images of section 6 by how
**unsure** the model is about them: for every box it considered, a score near 0.5 counts most and a
score near 0 or 1 counts nothing (the *uncertainty* of a box is the smaller of *score* and
*1 − score*); an image's uncertainty is the sum over its boxes, roughly the number of boxes you can
expect to fix there. Images with many middling scores come first. It writes into the results folder
(your image folder is not touched):

- `annotate_next.csv`: every image, most uncertain first, with its uncertainty, its number of boxes
  at the score threshold and of middling ones (scores between 0.2 and 0.8);
- `pre_annotations/`: one PASCAL VOC `.xml` per image for the first `Number_to_annotate` images,
  with the model's boxes at the score threshold, ready to correct;
- `annotate_next_label_studio.json`: the same images as **Label Studio** tasks, with the boxes (and
  their scores) as predictions to correct; `label_studio_config.xml` is the project's labeling setup.

The loop, once per round:
1. correct the boxes in one of three tools: fix wrong boxes, delete false ones, draw the missed cells:
   - **LabelImg**: *Open Dir* = the images, *Change Save Dir* = `pre_annotations`; save;
   - **CVAT**: create a task with the images, then *Upload annotations* as "PASCAL VOC 1.1" (a zip of
     the `.xml` files);
   - **Label Studio**: start it with `LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true` and
     `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT` set to the folder that *holds* your images folder (the
     tasks name each image as `/data/local-files/?d=<images folder>/<image>`, Label Studio's way of
     pointing at files on your computer); create a project, paste `label_studio_config.xml` into
     *Settings → Labeling Interface → Code*, add *Cloud Storage → Local Files* with your images folder
     (Import method *Tasks*, *Save* without *Sync*), then *Import* `annotate_next_label_studio.json`;
2. bring the corrections back: from LabelImg the saved `.xml` files; from CVAT or Label Studio an
   export as **Pascal VOC** (one `.xml` per image, to add to a folder of `.xml` files) or **COCO** (one
   `.json` holding every image, which `Training_annotations` can name); put the corrected images and
   their annotations with your training data (`Training_images` and `Training_annotations`); keep your
   test images apart;
3. train again (section 3.1 onwards) with a new `model_name` and `continue_from` set to this run's
   folder, so training starts from the model you have instead of from the beginning.

Your test images and the images the model trained on are never ranked (correcting test images and
training on them would make section 5's numbers meaningless): put new, unannotated images in
`Prediction_images`. With `Prediction_images` empty, section 6 predicts the test images and this cell
says so instead of ranking them.

An image on which the model finds nothing scores 0 and comes last: look at those too (they are in
`annotate_next.csv` with 0 detections).
""")

code("""
#@title 6.2 Rank the images for annotation and pre-annotate the first ones
Rank_images_for_annotation = True #@param {type:"boolean"}
Number_to_annotate = 10 #@param {type:"integer"}
import helpers.detection.workflow as workflow
if Rank_images_for_annotation:
    annotation_queue = workflow.rank_for_annotation(predictions, Number_to_annotate, Test_images)
    annotation_queue.show(rows=10)
""")

print(save(ROOT / "notebooks" / "detection_retinanet.ipynb"))
