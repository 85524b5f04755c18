"""helpers.voc: reading what LabelImg, CVAT and Roboflow write, clear errors, exact round-trip."""

import numpy as np
import pytest

from helpers import errors, images, voc

LABELIMG = """<annotation>
	<folder>JPEGImages</folder>
	<filename>cells_01.jpg</filename>
	<path>C:\\Users\\me\\cells\\cells_01.jpg</path>
	<source>
		<database>Unknown</database>
	</source>
	<size>
		<width>640</width>
		<height>480</height>
		<depth>3</depth>
	</size>
	<segmented>0</segmented>
	<object>
		<name>RBC</name>
		<pose>Unspecified</pose>
		<truncated>1</truncated>
		<difficult>0</difficult>
		<bndbox>
			<xmin>1</xmin>
			<ymin>2</ymin>
			<xmax>640</xmax>
			<ymax>480</ymax>
		</bndbox>
	</object>
	<object>
		<name>WBC</name>
		<pose>Unspecified</pose>
		<truncated>0</truncated>
		<difficult>1</difficult>
		<bndbox>
			<xmin>10</xmin>
			<ymin>20</ymin>
			<xmax>30</xmax>
			<ymax>40</ymax>
		</bndbox>
	</object>
</annotation>
"""

CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotation>
  <folder></folder>
  <filename>frame_000001.png</filename>
  <source>
    <database>Unknown</database>
    <annotation>Unknown</annotation>
    <image>Unknown</image>
  </source>
  <size>
    <width>100</width>
    <height>80</height>
    <depth></depth>
  </size>
  <segmented>0</segmented>
  <object>
    <name>nucleus</name>
    <truncated>0</truncated>
    <occluded>0</occluded>
    <difficult>0</difficult>
    <bndbox>
      <xmin>5.0</xmin>
      <ymin>6.0</ymin>
      <xmax>25.5</xmax>
      <ymax>30.25</ymax>
    </bndbox>
    <attributes>
      <attribute>
        <name>stage</name>
        <value>mitosis</value>
      </attribute>
    </attributes>
  </object>
</annotation>
"""

ROBOFLOW = """<annotation>
	<folder></folder>
	<filename>img_jpg.rf.3f9c.jpg</filename>
	<path>img_jpg.rf.3f9c.jpg</path>
	<source>
		<database>roboflow.com</database>
	</source>
	<size>
		<width>416</width>
		<height>416</height>
		<depth>3</depth>
	</size>
	<segmented>0</segmented>
	<object>
		<name>Platelets</name>
		<pose>Unspecified</pose>
		<truncated>0</truncated>
		<difficult>0</difficult>
		<occluded>0</occluded>
		<bndbox>
			<xmin>12.5</xmin>
			<xmax>60.75</xmax>
			<ymin>100.125</ymin>
			<ymax>150</ymax>
		</bndbox>
	</object>
</annotation>
"""


def _object_xml(name="<name>RBC</name>", box="<xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax>", extra=""):
    bndbox = f"<bndbox>{box}</bndbox>" if box is not None else ""
    return f"<object>{name}{extra}{bndbox}</object>"


def _annotation_xml(objects, size="<size><width>64</width><height>48</height><depth>3</depth></size>",
                    filename="a.png"):
    return f"<annotation><filename>{filename}</filename>{size}{''.join(objects)}</annotation>"


def _write(tmp_path, text, name="a.xml", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_labelimg_file(tmp_path):
    annotation = voc.read_voc(_write(tmp_path, LABELIMG))
    assert (annotation.filename, annotation.width, annotation.height, annotation.depth) == ("cells_01.jpg", 640, 480, 3)
    assert annotation.objects == [
        voc.VocObject("RBC", 1, 2, 640, 480, difficult=False, truncated=True),
        voc.VocObject("WBC", 10, 20, 30, 40, difficult=True, truncated=False),
    ]
    assert annotation.path == tmp_path / "a.xml"
    assert all(isinstance(value, float) for value in (annotation.objects[0].xmin, annotation.objects[0].ymax))


def test_cvat_file_with_float_coordinates_blank_depth_and_attribute_names(tmp_path):
    annotation = voc.read_voc(_write(tmp_path, CVAT))
    assert annotation.depth == voc.DEFAULT_DEPTH  # blank <depth>
    assert annotation.objects == [voc.VocObject("nucleus", 5.0, 6.0, 25.5, 30.25)]  # <attributes><name> ignored


def test_roboflow_file_with_floats_in_any_order(tmp_path):
    annotation = voc.read_voc(_write(tmp_path, ROBOFLOW))
    assert annotation.objects == [voc.VocObject("Platelets", 12.5, 100.125, 60.75, 150.0)]
    assert (annotation.width, annotation.height) == (416, 416)


def test_byte_order_mark_and_non_ascii_names(tmp_path):
    text = _annotation_xml([_object_xml("<name>Érythrocyte µ-Zelle 红细胞</name>")], filename="Zellbild_ä.png")
    annotation = voc.read_voc(_write(tmp_path, b"\xef\xbb\xbf" + text.encode("utf-8"), name="Bild_ü.xml"))
    assert annotation.filename == "Zellbild_ä.png"
    assert annotation.objects[0].name == "Érythrocyte µ-Zelle 红细胞"


def test_latin1_declared_encoding(tmp_path):
    text = '<?xml version="1.0" encoding="ISO-8859-1"?>' + _annotation_xml([_object_xml("<name>Kern ä</name>")])
    assert voc.read_voc(_write(tmp_path, text, encoding="latin-1")).objects[0].name == "Kern ä"


def test_verified_attribute_part_children_unknown_tags_and_blank_flags(tmp_path):
    obj = ("<object><name>person</name><truncated></truncated><extra>?</extra>"
           "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>"
           "<part><name>head</name><bndbox><xmin>100</xmin><ymin>100</ymin><xmax>200</xmax><ymax>200</ymax></bndbox></part>"
           "</object>")
    text = f'<annotation verified="no"><filename>a.png</filename><owner>x</owner><size><width>64</width>' \
           f'<height>48</height><depth>1</depth></size>{obj}</annotation>'
    annotation = voc.read_voc(_write(tmp_path, text))
    assert annotation.depth == 1
    assert annotation.objects == [voc.VocObject("person", 1, 2, 30, 40, difficult=False, truncated=False)]


def test_flags_and_file_order(tmp_path):
    objects = [_object_xml(f"<name>c{index}</name>", extra=flags) for index, flags in enumerate(
        ["<difficult> 1 </difficult>", "<difficult>true</difficult><truncated>yes</truncated>", "", "<difficult>0</difficult>"])]
    annotation = voc.read_voc(_write(tmp_path, _annotation_xml(objects)))
    assert [obj.name for obj in annotation.objects] == ["c0", "c1", "c2", "c3"]
    assert [obj.difficult for obj in annotation.objects] == [True, True, False, False]
    assert [obj.truncated for obj in annotation.objects] == [False, True, False, False]


def test_no_objects_is_valid(tmp_path):
    annotation = voc.read_voc(_write(tmp_path, _annotation_xml([])))
    assert annotation.objects == [] and annotation.width == 64


def test_coordinates_kept_as_written_no_clipping(tmp_path):
    box = "<xmin>-5</xmin><ymin>2</ymin><xmax>700.5</xmax><ymax>2</ymax>"
    obj = voc.read_voc(_write(tmp_path, _annotation_xml([_object_xml(box=box)]))).objects[0]
    assert (obj.xmin, obj.ymin, obj.xmax, obj.ymax) == (-5, 2, 700.5, 2)


@pytest.mark.parametrize("size", ["", "<size><width>0</width><height>0</height><depth>3</depth></size>",
                                  "<size><width></width><height>48</height></size>"])
def test_missing_or_zero_size_read_from_image_next_to_xml(tmp_path, size):
    images.write_image(tmp_path / "a.png", np.zeros((48, 64, 3), np.uint8))
    annotation = voc.read_voc(_write(tmp_path, _annotation_xml([_object_xml()], size=size)))
    assert (annotation.width, annotation.height, annotation.depth) == (64, 48, 3)


def test_missing_size_read_from_images_dir_with_windows_path_in_filename(tmp_path):
    images_dir = tmp_path / "images"
    images.write_image(images_dir / "cell 1.jpg", np.zeros((30, 20, 3), np.uint8))
    xml = _write(tmp_path, _annotation_xml([], size="", filename="C:\\data\\cell 1.jpg"), name="cell 1.xml")
    assert (voc.read_voc(xml, images_dir=images_dir).width, voc.read_voc(xml, images_dir).height) == (20, 30)


def test_missing_size_falls_back_to_xml_stem_with_any_extension(tmp_path):
    images.write_image(tmp_path / "b.TIF", np.zeros((30, 20, 3), np.uint8))
    xml = _write(tmp_path, _annotation_xml([], size="", filename="renamed.png"), name="b.xml")
    assert voc.read_voc(xml).width == 20


def test_missing_size_and_no_image_is_a_clear_error(tmp_path):
    xml = _write(tmp_path, _annotation_xml([], size="", filename="ghost.png"))
    with pytest.raises(errors.DatasetError, match=r"a\.xml.*<size>.*ghost\.png.*not found.*images_dir"):
        voc.read_voc(xml, images_dir=tmp_path / "images")


@pytest.mark.parametrize("content, pattern", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"<annotation><filename>a.png</filename>", "not valid XML"),
    (b"\xef\xbb\xbf", "not valid XML"),
    (b"<annotations><filename>a.png</filename></annotations>", "root element is <annotations>"),
    (b"<?xml version='1.0'?><!DOCTYPE annotation [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><annotation>"
     b"<filename>&e;</filename><size><width>1</width><height>1</height></size></annotation>", None),
])
def test_broken_files_raise_dataset_error_naming_the_file(tmp_path, content, pattern):
    path = _write(tmp_path, content, name="broken.xml")
    if pattern is None:  # external entity: never resolved, the file is read without it
        assert "root:" not in voc.read_voc(path).filename
        return
    with pytest.raises(errors.DatasetError, match=rf"broken\.xml: .*{pattern}.*\. \w"):
        voc.read_voc(path)


@pytest.mark.parametrize("objects, pattern", [
    ([_object_xml(), _object_xml(name="")], r"object 2 has no <name>"),
    ([_object_xml(name="<name>  </name>")], r"object 1 has a blank <name>"),
    ([_object_xml(), _object_xml(), _object_xml(box=None)], r"object 3 \('RBC'\) has no <bndbox>"),
    ([_object_xml(), _object_xml(), _object_xml(box="<xmin>1</xmin><ymin>2</ymin><ymax>4</ymax>")],
     r"object 3 \('RBC'\) has no <xmax>"),
    ([_object_xml(box="<xmin>1</xmin><ymin></ymin><xmax>3</xmax><ymax>4</ymax>")], r"object 1 \('RBC'\) has an empty <ymin>"),
    ([_object_xml(box="<xmin>1</xmin><ymin>2</ymin><xmax>3,5</xmax><ymax>4</ymax>")],
     r"object 1 \('RBC'\) has a non-numeric \('3,5'\) <xmax>"),
    ([_object_xml(box="<xmin>nan</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax>")], r"object 1 \('RBC'\) has a non-numeric"),
    ([_object_xml(extra="<difficult>maybe</difficult>")], r"object 1 \('RBC'\) has <difficult>maybe</difficult>"),
    ([_object_xml(extra="<score>high</score>")], r"object 1 \('RBC'\) has a non-numeric <score>"),
])
def test_bad_objects_name_file_and_object(tmp_path, objects, pattern):
    with pytest.raises(errors.DatasetError, match=rf"a\.xml: {pattern}.*\. [A-Z]\w+ "):  # then a fix sentence
        voc.read_voc(_write(tmp_path, _annotation_xml(objects)))


def test_round_trip_exact_with_floats_scores_and_unicode(tmp_path):
    original = voc.VocAnnotation("Zelle_ä 1.png", 641, 479, 1, [
        voc.VocObject("RBC", 1, 2, 640, 479, truncated=True),
        voc.VocObject("Érythrocyte", 0.1, 2.5, 1e-3 + 100, 1 / 3, difficult=True, score=0.123456789012345),
        voc.VocObject(" spaced ", 3, 4, 5, 6, score=1.0),
    ])
    path = voc.write_voc(original, tmp_path / "out" / "x.xml")
    assert path == tmp_path / "out" / "x.xml"
    again = voc.read_voc(path)
    assert again == original
    assert again.path == path and again.objects[1].ymax == 1 / 3
    assert voc.write_voc(again, tmp_path / "copy" / "out" / "x.xml").read_bytes() == path.read_bytes()


def test_written_file_layout_matches_labelimg(tmp_path):
    from lxml import etree

    original = voc.VocAnnotation("a.jpg", 64, 48, 3, [voc.VocObject("RBC", 1, 2.5, 30, 40, score=0.75),
                                                      voc.VocObject("WBC", 1, 2, 3, 4)])
    root = etree.parse(str(voc.write_voc(original, tmp_path / "a.xml"))).getroot()
    assert [child.tag for child in root] == ["folder", "filename", "source", "size", "segmented", "object", "object"]
    first, second = root.findall("object")
    assert [child.tag for child in first] == ["name", "pose", "truncated", "difficult", "score", "bndbox"]
    assert [child.tag for child in second] == ["name", "pose", "truncated", "difficult", "bndbox"]
    assert [child.text for child in first.find("bndbox")] == ["1", "2.5", "30", "40"]
    assert [root.findtext(f"size/{tag}") for tag in ("width", "height", "depth")] == ["64", "48", "3"]
    assert first.findtext("score") == "0.75"


def test_coco_box_has_no_plus_one():
    assert voc.coco_box(voc.VocObject("a", 10, 20, 30, 60)) == [10.0, 20.0, 20.0, 40.0]
    assert voc.coco_box(voc.VocObject("a", 0.5, 1, 2, 2)) == [0.5, 1.0, 1.5, 1.0]


def test_unreadable_path_is_dataset_error(tmp_path):
    with pytest.raises(errors.DatasetError, match="missing.xml"):
        voc.read_voc(tmp_path / "missing.xml")
