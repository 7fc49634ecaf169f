"""Format adapters on fixture folders built in the datasets' original layouts and file formats."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from siim_reference import siim_mask2rle

from chestlens.data import registry
from chestlens.data.formats import covidx_ct, folder, manifest, rsna, siim
from chestlens.data.records import MaskSource
from chestlens.data.rle import encode_rle
from chestlens.errors import ChestlensInputError

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
MY_MODULES = tuple(f"chestlens.data.formats.{m}" for m in ("siim", "rsna", "covidx_ct", "folder", "manifest"))


def write_dicom(path: Path, *, rows=48, cols=64, patient_id="anon", age="038Y", sex="M", view="PA") -> Path:
    """A small valid radiograph DICOM (8-bit MONOCHROME2) with the header fields adapters read."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = patient_id
    with warnings.catch_warnings():  # RSNA writes ages like "51", not a valid DICOM AS; keep it
        warnings.simplefilter("ignore", UserWarning)
        ds.PatientAge = age
    ds.PatientSex = sex
    ds.ViewPosition = view
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = (np.arange(rows * cols) % 256).astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds.save_as(path, enforce_file_format=True)
    return path


def write_png(path: Path, pixels: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels if pixels is not None else np.zeros((8, 8), dtype=np.uint8)).save(path)
    return path


# ---------------------------------------------------------------- SIIM-ACR

SIIM_IDS = {
    "two": "1.2.276.0.7230010.3.1.4.8323329.14508.1517875252.443873",
    "neg": "1.2.276.0.7230010.3.1.4.8323329.1034.1517875166.8504",
    "one": "1.2.276.0.7230010.3.1.4.8323329.5597.1517875188.959090",
    "test": "1.2.276.0.7230010.3.1.4.8323329.6000.1517875193.775354",
}
SIIM_SHAPE = (48, 64)  # non-square on purpose: a transposed decode would fail


def siim_instances() -> dict[str, list[np.ndarray]]:
    rows = SIIM_SHAPE[0]
    apex = np.zeros(SIIM_SHAPE, dtype=bool)
    apex[2:20, 5:12] = True  # tall thin region at the apex
    apex[20:25, 5:7] = True
    right = np.zeros(SIIM_SHAPE, dtype=bool)
    right[10:40, 50:60] = True
    small = np.zeros(SIIM_SHAPE, dtype=bool)
    small[rows - 1, 0] = small[0, 1] = True  # one run wrapping from column 0 into column 1
    small[30, 33] = True
    return {"two": [apex, right], "neg": [], "one": [small]}


def build_siim(root: Path, *, stage2: bool = False, flat: bool = False) -> Path:
    """The Kaggle layout (dicom-images-train/<study>/<series>/<id>.dcm + train-rle.csv with its
    leading-space header and values), or flat DICOMs + stage_2_train.csv (no spaces)."""
    for key, image_id in SIIM_IDS.items():
        split = "test" if key == "test" else "train"
        where = root if flat else root / f"dicom-images-{split}" / f"1.2.276.0.{key}.1" / f"1.2.276.0.{key}.2"
        rows, cols = SIIM_SHAPE
        write_dicom(where / f"{image_id}.dcm", rows=rows, cols=cols, patient_id=f"pid-{key}")
    sep = "," if stage2 else ", "
    lines = ["ImageId,EncodedPixels" if stage2 else "ImageId, EncodedPixels"]
    for key, masks in siim_instances().items():
        if not masks:
            lines.append(f"{SIIM_IDS[key]}{sep}-1")
        lines += [f"{SIIM_IDS[key]}{sep}{siim_mask2rle(m)}" for m in masks]
    (root / ("stage_2_train.csv" if stage2 else "train-rle.csv")).write_text("\n".join(lines) + "\n")
    return root


def test_siim_kaggle_layout_masks_match_the_encoded_ones(tmp_path):
    root = build_siim(tmp_path / "siim")
    assert siim.detect(root)
    samples = {s.extra["image_id"]: s for s in siim.load(root)}
    assert set(samples) == {SIIM_IDS[k] for k in ("two", "neg", "one")}  # the unlisted test image is skipped
    for key, instances in siim_instances().items():
        sample = samples[SIIM_IDS[key]]
        assert sample.uid.startswith("siim/dicom-images-train/") and sample.uid.endswith(".dcm")
        assert sample.findings == (("Pneumothorax",) if instances else ("No Pneumothorax",))
        assert sample.extra["instances"] == str(len(instances))
        assert (sample.modality, sample.view, sample.sex, sample.age) == ("xray", "PA", "M", 38.0)
        assert re.fullmatch(r"siim:[0-9a-f]{16}", sample.patient_id) and f"pid-{key}" not in sample.patient_id
        assert isinstance(sample.masks, MaskSource)
        layers = sample.masks.load().layers
        assert set(layers) == {"pneumothorax"} and sample.masks.classes == ("pneumothorax",)
        expected = np.logical_or.reduce(instances) if instances else np.zeros(SIIM_SHAPE, dtype=bool)
        np.testing.assert_array_equal(layers["pneumothorax"], expected)
        # the strings written by SIIM's algorithm are exactly what chestlens encodes
        assert sample.masks.rles == tuple(encode_rle(m, convention="siim") for m in instances)
        decoded = sample.masks.instances()
        assert len(decoded) == len(instances)
        for got, want in zip(decoded, instances, strict=True):
            np.testing.assert_array_equal(got.mask, want)
            assert got.label == "pneumothorax"
    assert len({s.patient_id for s in samples.values()}) == 3


def test_siim_hand_checked_instance_positions(tmp_path):
    root = build_siim(tmp_path / "siim")
    sample = next(s for s in siim.load(root) if s.extra["image_id"] == SIIM_IDS["one"])
    mask = sample.masks.load().layers["pneumothorax"]
    assert [tuple(p) for p in np.argwhere(mask)] == [(0, 1), (30, 33), (47, 0)]
    # written by the SIIM algorithm: the wrap run (flat 47, 48) then 33*48+30 - 49 background pixels
    assert sample.masks.rles == ("47 2 1565 1",)


def test_siim_stage2_flat_layout_gives_the_same_masks(tmp_path):
    kaggle = {s.extra["image_id"]: s for s in siim.load(build_siim(tmp_path / "a"))}
    flat_root = build_siim(tmp_path / "b", stage2=True, flat=True)
    flat = {s.extra["image_id"]: s for s in siim.load(flat_root)}
    assert set(flat) == set(kaggle)
    for image_id, sample in flat.items():
        assert sample.uid == f"siim/{image_id}.dcm"
        np.testing.assert_array_equal(
            sample.masks.load().layers["pneumothorax"], kaggle[image_id].masks.load().layers["pneumothorax"]
        )


def test_siim_prefers_stage2_when_both_files_exist(tmp_path):
    root = build_siim(tmp_path / "siim")
    (root / "stage_2_train.csv").write_text(f"ImageId,EncodedPixels\n{SIIM_IDS['test']},-1\n")
    assert siim.label_file(root).name == "stage_2_train.csv"
    assert [s.extra["image_id"] for s in siim.load(root)] == [SIIM_IDS["test"]]


def test_siim_label_file_in_kaggle_convention(tmp_path):
    root = build_siim(tmp_path / "siim", stage2=True, flat=True)
    lines = ["ImageId,EncodedPixels"]
    for key, masks in siim_instances().items():
        lines += [f"{SIIM_IDS[key]},{encode_rle(m, convention='kaggle')}" for m in masks] or [
            f"{SIIM_IDS[key]},-1"
        ]
    (root / "stage_2_train.csv").write_text("\n".join(lines) + "\n")
    samples = {s.extra["image_id"]: s for s in siim.load_siim(root, convention="kaggle")}
    for key, instances in siim_instances().items():
        for got, want in zip(samples[SIIM_IDS[key]].masks.instances(), instances, strict=True):
            np.testing.assert_array_equal(got.mask, want)


def test_siim_without_headers_reads_the_size_lazily(tmp_path):
    samples = siim.load_siim(build_siim(tmp_path / "siim"), read_headers=False)
    sample = next(s for s in samples if s.extra["image_id"] == SIIM_IDS["two"])
    assert (sample.view, sample.sex, sample.age, sample.masks.shape) == (None, None, None, None)
    assert sample.masks.load().layers["pneumothorax"].shape == SIIM_SHAPE


def test_siim_bad_rle_names_file_and_line(tmp_path):
    root = build_siim(tmp_path / "siim")
    csv_path = root / "train-rle.csv"
    lines = csv_path.read_text().splitlines()
    lines[2] = f"{SIIM_IDS['one']}, 12 7 abc"
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ChestlensInputError, match=r"train-rle\.csv: line 3: .*non-integer") as info:
        siim.load(root)
    assert info.value.path == str(csv_path)


def test_siim_out_of_bounds_rle_fails_at_mask_load_naming_file_and_line(tmp_path):
    root = build_siim(tmp_path / "siim")
    csv_path = root / "train-rle.csv"
    csv_path.write_text(f"ImageId, EncodedPixels\n{SIIM_IDS['one']}, 3070 10\n")
    (sample,) = siim.load(root)
    with pytest.raises(ChestlensInputError, match=r"train-rle\.csv: line 2: .*past the 48x64 image"):
        sample.masks.load()


def test_siim_rejects_an_image_listed_as_negative_and_positive(tmp_path):
    root = build_siim(tmp_path / "siim")
    with (root / "train-rle.csv").open("a") as handle:
        handle.write(f"{SIIM_IDS['two']}, -1\n")
    with pytest.raises(ChestlensInputError, match=r"line \d+: image .* both as -1 and with a mask"):
        siim.load(root)


def test_siim_detect_ignores_other_stage_2_train_files(tmp_path):
    (tmp_path / "stage_2_train.csv").write_text("ID,Label\nID_12cadc6af_epidural,0\n")  # RSNA ICH
    assert not siim.detect(tmp_path)


def test_siim_warns_about_listed_images_that_are_missing(tmp_path):
    root = build_siim(tmp_path / "siim")
    with (root / "train-rle.csv").open("a") as handle:
        handle.write("1.2.276.0.7230010.3.1.4.8323329.9.9.9, -1\n")
    with pytest.warns(UserWarning, match="1 of 4 images"):
        assert len(siim.load(root)) == 3


# ---------------------------------------------------------------- RSNA pneumonia

RSNA = {
    "boxes": "00436515-870c-4b36-a041-de91049b9ab4",
    "normal": "0004cfab-14fd-4e49-80ba-63a80b6bddd6",
    "other": "00313ee0-9eaa-42f4-b0ab-c148ed3241cd",
}


def build_rsna(root: Path) -> Path:
    images = root / "stage_2_train_images"
    write_dicom(images / f"{RSNA['boxes']}.dcm", patient_id=RSNA["boxes"], age="32", sex="F", view="AP")
    write_dicom(images / f"{RSNA['normal']}.dcm", patient_id=RSNA["normal"], age="51", sex="F", view="PA")
    write_dicom(images / f"{RSNA['other']}.dcm", patient_id=RSNA["other"], age="48", sex="F", view="PA")
    (root / "stage_2_train_labels.csv").write_text(
        "patientId,x,y,width,height,Target\n"
        f"{RSNA['normal']},,,,,0\n"
        f"{RSNA['other']},,,,,0\n"
        f"{RSNA['boxes']},264.0,152.0,213.0,379.0,1\n"
        f"{RSNA['boxes']},562.0,152.0,256.0,453.0,1\n"
    )
    (root / "stage_2_detailed_class_info.csv").write_text(
        "patientId,class\n"
        f"{RSNA['normal']},Normal\n"
        f"{RSNA['other']},No Lung Opacity / Not Normal\n"
        f"{RSNA['boxes']},Lung Opacity\n"
        f"{RSNA['boxes']},Lung Opacity\n"
    )
    return root


def test_rsna_boxes_classes_and_headers(tmp_path):
    root = build_rsna(tmp_path / "rsna")
    assert rsna.detect(root)
    samples = {s.patient_id: s for s in rsna.load(root)}
    assert set(samples) == {f"rsna:{pid}" for pid in RSNA.values()}
    boxed = samples[f"rsna:{RSNA['boxes']}"]
    assert boxed.boxes == ((264.0, 152.0, 477.0, 531.0, "opacity"), (562.0, 152.0, 818.0, 605.0, "opacity"))
    assert boxed.findings == ("Lung Opacity",) and boxed.extra["target"] == "1"
    assert (boxed.view, boxed.sex, boxed.age) == ("AP", "F", 32.0)
    assert boxed.uid == f"rsna/stage_2_train_images/{RSNA['boxes']}.dcm"
    normal = samples[f"rsna:{RSNA['normal']}"]
    assert normal.boxes == () and normal.findings == ("Normal",) and normal.age == 51.0
    assert samples[f"rsna:{RSNA['other']}"].findings == ("No Lung Opacity / Not Normal",)


def test_rsna_without_headers(tmp_path):
    samples = rsna.load_rsna(build_rsna(tmp_path / "rsna"), read_headers=False)
    assert {(s.view, s.sex, s.age) for s in samples} == {(None, None, None)}


def test_rsna_target_1_row_without_box_names_file_and_line(tmp_path):
    root = build_rsna(tmp_path / "rsna")
    with (root / "stage_2_train_labels.csv").open("a") as handle:
        handle.write(f"{RSNA['other']},,,,,1\n")
    with pytest.raises(ChestlensInputError, match=r"stage_2_train_labels\.csv: line 6: Target 1 row needs"):
        rsna.load(root)


def test_rsna_missing_class_file(tmp_path):
    root = build_rsna(tmp_path / "rsna")
    (root / "stage_2_detailed_class_info.csv").unlink()
    with pytest.raises(ChestlensInputError, match=r"stage_2_detailed_class_info\.csv: missing"):
        rsna.load(root)


def test_rsna_skips_listed_images_that_are_missing(tmp_path):
    root = build_rsna(tmp_path / "rsna")
    (root / "stage_2_train_images" / f"{RSNA['other']}.dcm").unlink()
    with pytest.warns(UserWarning, match="1 of 3 images"):
        assert len(rsna.load(root)) == 2


# ---------------------------------------------------------------- COVIDx CT

CNCB_NAMES = ("NCP_328_1805_0042.png", "CP_1070_3112_0032.png", "Normal_2_51_0001.png")


def test_covidx_ct_file_name_convention(tmp_path):
    for name in (*CNCB_NAMES, "radiopaedia-40_85902-1-0021.png"):
        write_png(tmp_path / name)
    assert covidx_ct.detect(tmp_path)
    with pytest.warns(UserWarning, match="1 PNG files"):
        samples = {s.path.name: s for s in covidx_ct.load(tmp_path)}
    assert set(samples) == set(CNCB_NAMES)
    covid = samples["NCP_328_1805_0042.png"]
    assert covid.findings == ("COVID-19",) and covid.patient_id == "covidx_ct:NCP_328"
    assert covid.extra == {"cncb_class": "NCP", "scan": "1805", "slice": "0042"}
    assert (covid.modality, covid.view, covid.boxes) == ("ct", "axial", ())
    assert samples["CP_1070_3112_0032.png"].findings == ("Pneumonia",)
    assert samples["Normal_2_51_0001.png"].findings == ("Normal",)
    assert samples["Normal_2_51_0001.png"].uid == "covidx_ct/Normal_2_51_0001.png"


def build_covidx_label_files(root: Path) -> Path:
    for name in (*CNCB_NAMES, "volume-covid19-A-0003_ct-0042.png", "unlisted_1_1_0001.png"):
        write_png(root / "2A_images" / name)
    (root / "train_COVIDx_CT-2A.txt").write_text(
        "NCP_328_1805_0042.png 2 21 78 495 400\nvolume-covid19-A-0003_ct-0042.png 2 10 20 500 480\n"
    )
    (root / "val_COVIDx_CT-2A.txt").write_text("CP_1070_3112_0032.png 1 33 82 488 370\n")
    (root / "test_COVIDx_CT-2A.txt").write_text(
        "Normal_2_51_0001.png 0 9 95 502 402\nNCP_328_1805_0042.png 2 0 0 5 5\n\n"
    )
    return root


def test_covidx_ct_label_files(tmp_path):
    root = build_covidx_label_files(tmp_path / "covidxct")
    assert covidx_ct.detect(root)
    samples = {s.path.name: s for s in covidx_ct.load(root)}
    assert set(samples) == {*CNCB_NAMES, "volume-covid19-A-0003_ct-0042.png"}
    covid = samples["NCP_328_1805_0042.png"]  # listed in train and test: train wins
    assert covid.extra["split"] == "train" and covid.boxes == ((21.0, 78.0, 495.0, 400.0, "lung"),)
    assert covid.uid == "covidx_ct/2A_images/NCP_328_1805_0042.png"
    other = samples["volume-covid19-A-0003_ct-0042.png"]
    assert other.findings == ("COVID-19",) and other.patient_id == "covidx_ct:volume-covid19-A-0003_ct"
    assert other.extra == {"scan": "volume-covid19-A-0003_ct", "slice": "0042", "split": "train"}
    assert samples["CP_1070_3112_0032.png"].extra["split"] == "val"
    assert samples["CP_1070_3112_0032.png"].findings == ("Pneumonia",)
    assert samples["Normal_2_51_0001.png"].findings == ("Normal",)


def test_covidx_ct_bad_label_line_names_file_and_line(tmp_path):
    root = build_covidx_label_files(tmp_path / "covidxct")
    bad = "CP_1070_3112_0032.png 1 33 82 488 370\nCP_1_2_0003.png 3 0 0 9 9\n"
    (root / "val_COVIDx_CT-2A.txt").write_text(bad)
    with pytest.raises(ChestlensInputError, match=r"val_COVIDx_CT-2A\.txt: line 2: class must be 0, 1 or 2"):
        covidx_ct.load(root)


# ---------------------------------------------------------------- folder per class


def test_folder_per_class(tmp_path):
    write_png(tmp_path / "covid" / "a.png")
    write_png(tmp_path / "healthy" / "sub" / "b.png")
    write_dicom(tmp_path / "healthy" / "c.dcm")
    write_png(tmp_path / "masks" / "a.png")  # not a class
    write_png(tmp_path / ".cache" / "x.png")
    (tmp_path / "empty").mkdir()
    assert folder.detect(tmp_path)
    with pytest.warns(UserWarning, match="no patient ids"):
        samples = {s.uid: s for s in folder.load(tmp_path)}
    assert set(samples) == {"folder/covid/a.png", "folder/healthy/c.dcm", "folder/healthy/sub/b.png"}
    assert samples["folder/healthy/sub/b.png"].findings == ("healthy",)
    assert samples["folder/healthy/sub/b.png"].patient_id == "folder:b"
    assert samples["folder/covid/a.png"].extra == {}


def test_folder_with_splits(tmp_path):
    for split, cls, name in [("train", "covid", "a"), ("train", "healthy", "b"), ("Test", "covid", "c")]:
        write_png(tmp_path / split / cls / f"{name}.jpg")
    assert folder.detect(tmp_path)
    with pytest.warns(UserWarning):
        samples = {s.uid: s for s in folder.load(tmp_path)}
    assert samples["folder/Test/covid/c.jpg"].extra == {"split": "Test"}
    assert samples["folder/train/healthy/b.jpg"].findings == ("healthy",)


def test_folder_not_detected_for_one_class_or_with_a_manifest(tmp_path):
    write_png(tmp_path / "covid" / "a.png")
    (tmp_path / "notes").mkdir()
    assert not folder.detect(tmp_path)
    write_png(tmp_path / "healthy" / "b.png")
    assert folder.detect(tmp_path)
    (tmp_path / "manifest.csv").write_text("path,label\ncovid/a.png,covid\n")
    assert not folder.detect(tmp_path)


# ---------------------------------------------------------------- CSV manifest


def build_manifest(root: Path) -> Path:
    write_png(root / "img" / "a.png")
    write_png(root / "img" / "b.png")
    write_dicom(root / "img" / "c.dcm")
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:4, 5] = 255
    write_png(root / "masks" / "a_lesion.png", mask)
    write_png(root / "masks" / "a_lung.png", np.full((8, 8), 255, dtype=np.uint8))
    (root / "manifest.csv").write_text(
        " Path ,Label,patient_id,sex,age,view,mask,mask_lung,source,split\n"
        "img/a.png,COVID-19|ARDS,p1,female,054Y,PA,masks/a_lesion.png,masks/a_lung.png,hospital-a,train\n"
        "img/b.png,Normal,p1,M,61,,,,hospital-a,test\n"
        "img/c.dcm,Normal,,,,AP,,,,\n"
    )
    return root


def test_manifest_rows(tmp_path):
    root = build_manifest(tmp_path)
    assert manifest.detect(root)
    with pytest.warns(UserWarning, match="1 rows have no patient_id"):
        samples = {s.uid: s for s in manifest.load(root)}
    a = samples["hospital-a/img/a.png"]
    assert (a.source, a.patient_id, a.findings) == ("hospital-a", "hospital-a:p1", ("COVID-19", "ARDS"))
    assert (a.sex, a.age, a.view, a.modality, a.extra) == ("F", 54.0, "PA", "xray", {"split": "train"})
    assert a.path == root / "img" / "a.png"
    assert isinstance(a.masks, MaskSource)
    layers = a.masks.load().layers
    assert a.masks.classes == ("mask", "lung")
    assert [tuple(p) for p in np.argwhere(layers["mask"])] == [(2, 5), (3, 5)]
    assert layers["lung"].all()
    b = samples["hospital-a/img/b.png"]
    assert (b.patient_id, b.sex, b.age, b.view, b.masks) == ("hospital-a:p1", "M", 61.0, None, None)
    c = samples["manifest/img/c.dcm"]
    assert (c.source, c.patient_id, c.findings) == ("manifest", "manifest:c", ("Normal",))


def test_manifest_any_csv_path_resolves_relative_to_its_folder(tmp_path):
    write_png(tmp_path / "data" / "x.png")
    csv_path = tmp_path / "data" / "labels.csv"
    csv_path.write_text("path,label,patient_id,modality\nx.png,COVID-19,7,CT\n")
    (sample,) = manifest.load_manifest(csv_path)
    assert (sample.uid, sample.path, sample.modality) == ("manifest/x.png", tmp_path / "data" / "x.png", "ct")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("img/missing.png,Normal,p2,,,,,,,", r"line 3: image file not found: img/missing\.png"),
        ("img/b.png,,p2,,,,,,,", "line 3: empty label"),
        ("img/b.png,Normal,p2,X,,,,,,", "line 3: sex must be M or F"),
        ("img/b.png,Normal,p2,,old,,,,,", "line 3: not an age"),
        ("img/b.png,Normal,p2,,,,masks/none.png,,,", r"line 3: mask file not found: masks/none\.png"),
        ("img/a.png,Normal,p2,,,,,,hospital-a,", r"line 3: img/a\.png is already listed on line 2"),
    ],
)
def test_manifest_bad_row_names_file_and_line(tmp_path, row, reason):
    root = build_manifest(tmp_path)
    lines = (root / "manifest.csv").read_text().splitlines()
    lines[2] = row
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ChestlensInputError, match=rf"manifest\.csv: {reason}") as info:
        manifest.load(root)
    assert info.value.path == str(root / "manifest.csv")


def test_manifest_missing_required_column(tmp_path):
    csv_path = tmp_path / "manifest.csv"
    csv_path.write_text("path,finding\na.png,Normal\n")
    with pytest.raises(ChestlensInputError, match=r"manifest\.csv: missing required column\(s\) label"):
        manifest.load(tmp_path)


# ---------------------------------------------------------------- registry


def test_find_sources_picks_each_layout(tmp_path, monkeypatch):
    """find_sources with only these adapters registered (the other built-ins may not exist yet)."""
    monkeypatch.setattr(registry, "_BUILTIN_MODULES", MY_MODULES)
    monkeypatch.setattr(registry, "_loaded", False)
    data = tmp_path / "data"
    build_siim(data / "siim-acr-pneumothorax-segmentation")
    build_rsna(data / "rsna-pneumonia-detection-challenge")
    build_covidx_label_files(data / "covidxct")
    found = {(a.name, p) for a, p in registry.find_sources(data)}
    assert found >= {
        ("siim", data / "siim-acr-pneumothorax-segmentation"),
        ("rsna", data / "rsna-pneumonia-detection-challenge"),
        ("covidx_ct", data / "covidxct"),
    }
    assert not {name for name, _ in found} & {"folder", "manifest"}

    tree = tmp_path / "tree"
    write_png(tree / "covid" / "a.png")
    write_png(tree / "healthy" / "b.png")
    assert [(a.name, p) for a, p in registry.find_sources(tree)] == [("folder", tree)]
    (tree / "manifest.csv").write_text("path,label\ncovid/a.png,covid\n")
    assert [(a.name, p) for a, p in registry.find_sources(tree)] == [("manifest", tree)]

    flat_siim = build_siim(tmp_path / "flat", stage2=True, flat=True)
    assert ("siim", flat_siim) in {(a.name, p) for a, p in registry.find_sources(flat_siim)}


def test_find_sources_with_all_builtin_adapters(tmp_path):
    """The same with every built-in module imported; a broken adapter import fails here."""
    registry.adapters()  # imports every built-in adapter module: an ImportError is a test failure
    data = tmp_path / "data"
    build_siim(data / "siim-acr-pneumothorax-segmentation")
    build_rsna(data / "rsna-pneumonia-detection-challenge")
    found = {(a.name, p) for a, p in registry.find_sources(data)}
    assert ("siim", data / "siim-acr-pneumothorax-segmentation") in found
    assert ("rsna", data / "rsna-pneumonia-detection-challenge") in found
    assert len(registry.load_samples(data, ["siim", "rsna"])) == 6
