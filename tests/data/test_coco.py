"""COCO import (CVAT layout, polygons, RLE), export of predictions and the import-export round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from chestlens.data.annotations import ImagePrediction, Instance, export_coco, results_path
from chestlens.data.formats import coco
from chestlens.data.registry import find_sources
from chestlens.errors import ChestlensInputError

ROWS, COLS = 16, 20


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE, written independently of pycocotools: column-major runs, zeros first."""
    flat = np.asarray(mask, dtype=np.int8).T.ravel()
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return [0, *counts] if flat[0] else counts


def blob(seed: int, shape: tuple[int, int] = (ROWS, COLS)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[3:11, 4:15] = np.random.default_rng(seed).random((8, 11)) > 0.4
    return mask


def write_image(path: Path, shape: tuple[int, int] = (ROWS, COLS)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(path)


def write_cvat_project(folder: Path) -> dict:
    """CVAT "COCO 1.0" export: a polygon, an uncompressed and a compressed RLE, a box, a negative."""
    for name in ("a.png", "b.png", "c.png"):
        write_image(folder / "images" / "default" / name)
    crowd, compressed = blob(1), blob(2)
    string = coco_mask.encode(np.asfortranarray(compressed, dtype=np.uint8))["counts"].decode("ascii")
    data = {
        "licenses": [],
        "info": {},
        "categories": [
            {"id": 1, "name": "lesion"},
            {"id": 2, "name": "effusion"},
            {"id": 3, "name": "nodule"},
        ],
        "images": [
            {"id": 1, "file_name": "a.png", "width": COLS, "height": ROWS},
            {"id": 2, "file_name": "b.png", "width": COLS, "height": ROWS, "patient_id": "P7"},
            {"id": 3, "file_name": "c.png", "width": COLS, "height": ROWS},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": [1, 1, 4, 3],
                "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "iscrowd": 1,
                "bbox": [4, 3, 11, 8],
                "segmentation": {"size": [ROWS, COLS], "counts": rle_counts(crowd)},
            },
            {
                "id": 3,
                "image_id": 2,
                "category_id": 1,
                "iscrowd": 1,
                "bbox": [4, 3, 11, 8],
                "segmentation": {"size": [ROWS, COLS], "counts": string},
            },
            {
                "id": 4,
                "image_id": 2,
                "category_id": 3,
                "iscrowd": 0,
                "bbox": [2.5, 6, 3, 4.5],
                "segmentation": [],
            },
        ],
    }
    path = folder / "annotations" / "instances_default.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    polygon = np.zeros((ROWS, COLS), dtype=bool)
    polygon[1:4, 1:5] = True  # corners (1,1)-(5,4): rows 1-3, columns 1-4
    return {"data": data, "json": path, "polygon": polygon, "crowd": crowd, "compressed": compressed}


def test_polygon_uses_pixel_corners(tmp_path):
    (sample,) = _single_image_load([[1, 1, 3, 1, 3, 3, 1, 3]], tmp_path)
    expected = np.zeros((6, 6), dtype=bool)
    expected[1:3, 1:3] = True
    assert np.array_equal(sample.masks.load().layers["x"], expected)


def _single_image_load(segmentation: list, folder: Path) -> list:
    write_image(folder / "images" / "i.png", (6, 6))
    data = {
        "images": [{"id": 1, "file_name": "i.png", "width": 6, "height": 6}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation}],
    }
    (folder / "annotations.json").write_text(json.dumps(data))
    return coco.load(folder)


def test_cvat_layout_found_and_loaded(tmp_path):
    project = write_cvat_project(tmp_path)
    assert [(a.name, f) for a, f in find_sources(tmp_path)] == [("coco", tmp_path)]
    a, b, c = coco.load(tmp_path)
    assert [s.uid for s in (a, b, c)] == [
        "coco/images/default/a.png",
        "coco/images/default/b.png",
        "coco/images/default/c.png",
    ]
    assert (a.findings, b.findings, c.findings) == (
        ("effusion", "lesion"),
        ("lesion", "nodule"),
        ("no finding",),
    )
    assert (a.patient_id, b.patient_id, c.patient_id) == ("coco:a", "coco:P7", "coco:c")
    assert b.boxes == ((4.0, 3.0, 15.0, 11.0, "lesion"), (2.5, 6.0, 5.5, 10.5, "nodule"))
    assert a.masks.classes == ("lesion", "effusion", "nodule")
    layers = a.masks.load().layers
    assert np.array_equal(layers["lesion"], project["polygon"])
    assert np.array_equal(layers["effusion"], project["crowd"]) and not layers["nodule"].any()
    masks_b = b.masks.load()
    assert np.array_equal(masks_b.layers["lesion"], project["compressed"])
    assert masks_b.ignore is not None and np.argwhere(masks_b.ignore).tolist() == [
        [r, col] for r in range(6, 11) for col in range(2, 6)
    ]
    negative = c.masks.load()
    assert not any(layer.any() for layer in negative.layers.values()) and negative.ignore is None
    assert c.masks.instances() == [] and a.extra["annotation_file"] == "instances_default.json"


def test_rle_string_counts_matches_independent_encoder():
    for seed in range(5):
        mask = np.random.default_rng(seed).random((9, 13)) > 0.5
        string = coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))["counts"].decode("ascii")
        assert coco.rle_string_counts(string) == rle_counts(mask)
    assert coco.rle_string_counts("0") == [0]
    with pytest.raises(ValueError, match="malformed"):
        coco.rle_string_counts("P")  # continuation bit set on the last character


def _predictions(samples) -> list[ImagePrediction]:
    return [
        ImagePrediction(
            file_name=s.path.name,
            width=COLS,
            height=ROWS,
            instances=[
                Instance(i.label, i.mask, i.box, score=0.5 + 0.1 * k)
                for k, i in enumerate(s.masks.instances())
            ],
        )
        for s in samples
    ]


def test_import_export_import_is_exact(tmp_path):
    write_cvat_project(tmp_path / "src")
    first = coco.load(tmp_path / "src")
    dataset, results = export_coco(
        _predictions(first), tmp_path / "out" / "pred.json", categories=["lesion", "effusion", "nodule"]
    )
    assert results == results_path(dataset) == tmp_path / "out" / "pred_results.json"
    second = coco.load_coco(dataset, tmp_path / "src" / "images" / "default")
    assert [s.findings for s in second] == [s.findings for s in first]
    for old, new in zip(first, second, strict=True):
        assert new.boxes == old.boxes
        for i, j in zip(old.masks.instances(), new.masks.instances(), strict=True):
            assert (i.label, i.box) == (j.label, j.box)
            assert (i.mask is None and j.mask is None) or np.array_equal(i.mask, j.mask)
    written = json.loads(dataset.read_text())
    assert [a["score"] for a in written["annotations"]] == [0.5, 0.6, 0.5, 0.6]
    assert written["annotations"][3]["segmentation"] == [] and written["annotations"][3]["area"] == 13.5
    listed = json.loads(results.read_text())
    assert [(r["image_id"], r["category_id"], "segmentation" in r) for r in listed] == [
        (1, 1, True),
        (1, 2, True),
        (2, 1, True),
        (2, 3, False),
    ]


def test_results_load_in_pycocotools(tmp_path, capsys):
    from pycocotools.coco import COCO

    write_cvat_project(tmp_path / "src")
    dataset, results = export_coco(
        _predictions(coco.load(tmp_path / "src")),
        tmp_path / "p.json",
        categories=["lesion", "effusion", "nodule"],
    )
    ground_truth = COCO(str(dataset))
    detections = ground_truth.loadRes(str(results))
    assert len(detections.getAnnIds()) == 4 and ground_truth.getImgIds() == [1, 2, 3]
    capsys.readouterr()  # pycocotools prints progress


def test_export_rejects_bad_predictions(tmp_path):
    good = Instance("lesion", np.ones((ROWS, COLS), dtype=bool), (0, 0, COLS, ROWS), 0.9)
    with pytest.raises(ChestlensInputError, match=r"x\.png: label 'other' is not one of the categories"):
        export_coco(
            [ImagePrediction("x.png", COLS, ROWS, [Instance("other", None, (0, 0, 1, 1))])],
            tmp_path / "o.json",
            categories=["lesion"],
        )
    with pytest.raises(ChestlensInputError, match=r"x\.png: mask shape \(16, 20\)"):
        export_coco([ImagePrediction("x.png", 8, 8, [good])], tmp_path / "o.json", categories=["lesion"])
    assert not (tmp_path / "o.json").exists()


def _break(project: dict, change) -> Path:
    data = json.loads(json.dumps(project["data"]))
    change(data)
    project["json"].write_text(json.dumps(data))
    return project["json"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["annotations"][1].update(image_id=9),
            r"annotations\[1\] \(id 2\): image_id 9 is not in",
        ),
        (lambda d: d["annotations"][0].update(category_id=7), r"annotations\[0\] \(id 1\): category_id 7"),
        (
            lambda d: d["images"][2].update(file_name="zz.png"),
            r"images\[2\] \(id 3\): image 'zz.png' not found",
        ),
        (lambda d: d["images"][0].update(file_name="../a.png"), r"images\[0\] \(id 1\): 'file_name' must be"),
        (lambda d: d["images"].append(d["images"][0]), r"images\[3\] \(id 1\): duplicate image id"),
        (
            lambda d: d["annotations"][1]["segmentation"]["counts"].append(1),
            r"annotations\[1\].*cover 16 x 20",
        ),
        (
            lambda d: d["annotations"][2]["segmentation"].update(counts="o"),
            r"annotations\[2\].*malformed compr",
        ),
        (lambda d: d["annotations"][2]["segmentation"].update(size=[20, 16]), r"annotations\[2\].*RLE size"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 1, 2, 2]]), r"annotations\[0\].*at least 3"),
        (lambda d: d["annotations"][3].pop("bbox"), r"annotations\[3\] \(id 4\): needs 'bbox'"),
        (lambda d: d.pop("categories"), r"no 'categories' list"),
    ],
)
def test_bad_entries_name_file_and_entry(tmp_path, change, message):
    path = _break(write_cvat_project(tmp_path), change)
    with pytest.raises(ChestlensInputError, match=message) as caught:
        coco.load(tmp_path)
    assert caught.value.path == str(path)


def test_bad_json_and_missing_bbox_from_mask(tmp_path):
    project = write_cvat_project(tmp_path)
    project["json"].write_text("{not json")
    with pytest.raises(ChestlensInputError, match=r"instances_default\.json: not a readable JSON file"):
        coco.load(tmp_path)
    (sample,) = _single_image_load([[1, 1, 3, 1, 3, 3, 1, 3]], tmp_path / "single")
    assert sample.boxes == ((1.0, 1.0, 3.0, 3.0, "x"),)  # no bbox: computed from the polygon


def test_detect_is_specific(tmp_path):
    write_image(tmp_path / "images" / "a.png")
    (tmp_path / "annotations.json").write_text('[{"not": "coco"}]')
    assert not coco.detect(tmp_path)
    (tmp_path / "annotations.json").write_text('{"images": []')
    assert coco.detect(tmp_path) and not coco.detect(tmp_path / "images")


@pytest.mark.shared_data
def test_real_data_root_not_claimed(shared_data):
    folders = [shared_data, *(p for p in shared_data.iterdir() if p.is_dir())]
    assert [f.name for f in folders if coco.detect(f)] == []
    assert find_sources(shared_data, names=["coco"]) == []
