"""Supervisely project import: bitmaps encoded as the Supervisely SDK does, polygons with holes,
rectangles, negatives, bad files, and the hand-off to COCO."""

from __future__ import annotations

import base64
import io
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chestlens.data.annotations import ImagePrediction, export_coco, mask_box
from chestlens.data.formats import coco, supervisely
from chestlens.data.formats.supervisely import decode_bitmap, fill_polygon
from chestlens.data.registry import find_sources
from chestlens.errors import ChestlensInputError

ROWS, COLS = 20, 24
META = {
    "classes": [
        {"title": "lesion", "shape": "bitmap", "color": "#FF0000"},
        {"title": "effusion", "shape": "polygon", "color": "#00FF00"},
        {"title": "device", "shape": "rectangle", "color": "#0000FF"},
        {"title": "marker", "shape": "point", "color": "#FFFFFF"},
    ],
    "tags": [],
}


def sdk_bitmap(mask: np.ndarray) -> dict:
    """``bitmap`` JSON as ``supervisely.Bitmap(mask).to_json()`` writes it: the mask cropped to its
    tight box, saved as a 1-bit palette PNG with index 0 transparent, zlib-compressed, base64;
    ``origin`` is ``[col, row]`` of the crop's top-left pixel."""
    x0, y0, x1, y1 = (int(v) for v in mask_box(mask))
    image = Image.fromarray(mask[y0:y1, x0:x1].astype(np.uint8))
    image.putpalette([0, 0, 0, 255, 255, 255])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0, optimize=0)
    data = base64.b64encode(zlib.compress(buffer.getvalue())).decode("utf-8")
    return {"data": data, "origin": [x0, y0]}


def other_bitmap(mask: np.ndarray, mode: str, compress: bool = True) -> str:
    """Encodings other tools write: RGBA with the mask in alpha, or grayscale 0/255."""
    if mode == "RGBA":
        pixels = np.zeros((*mask.shape, 4), dtype=np.uint8)
        pixels[..., 0] = 200  # colour everywhere; only alpha marks the object
        pixels[..., 3] = mask * 255
    else:
        pixels = mask.astype(np.uint8) * 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    raw = zlib.compress(buffer.getvalue()) if compress else buffer.getvalue()
    return base64.b64encode(raw).decode("ascii")


def obj(title: str, geometry: str, **fields) -> dict:
    return {"classTitle": title, "geometryType": geometry, "tags": [], "description": "", **fields}


def write_project(folder: Path) -> dict:
    """ds0/a.png: bitmap, polygon with a hole, rectangle, point; ds0/b.png: negative (legacy
    annotation name, patient tag); nested/ds1/c.png: a bitmap at an offset origin."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps(META))
    rng = np.random.default_rng(0)
    lesion = np.zeros((ROWS, COLS), dtype=bool)
    lesion[2:9, 3:12] = rng.random((7, 9)) > 0.4
    lesion[2, 3] = lesion[8, 11] = True  # fix the tight box
    small = rng.random((5, 6)) > 0.5
    small[0, 0] = small[-1, -1] = True
    ring = [[10, 10], [20, 10], [20, 18], [10, 18]]
    hole = [[13, 12], [16, 12], [16, 15], [13, 15]]
    annotations = {
        "ds0/a.png": [
            obj("lesion", "bitmap", bitmap=sdk_bitmap(lesion)),
            obj("effusion", "polygon", points={"exterior": ring, "interior": [hole]}),
            obj("device", "rectangle", points={"exterior": [[6, 14], [2, 12]], "interior": []}),
            obj("marker", "point", points={"exterior": [[1, 1]], "interior": []}),
        ],
        "ds0/b.png": [],
        "nested/ds1/c.png": [
            obj("lesion", "bitmap", bitmap={"data": sdk_bitmap(small)["data"], "origin": [7, 11]})
        ],
    }
    for relative, objects in annotations.items():
        dataset, name = (folder / relative).parent, Path(relative).name
        (dataset / "img").mkdir(parents=True, exist_ok=True)
        (dataset / "ann").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((ROWS, COLS), dtype=np.uint8)).save(dataset / "img" / name)
        tags = [{"name": "patient_id", "value": "P1"}] if name == "b.png" else []
        ann_name = "b.json" if name == "b.png" else f"{name}.json"
        ann = {"description": "", "size": {"height": ROWS, "width": COLS}, "tags": tags, "objects": objects}
        (dataset / "ann" / ann_name).write_text(json.dumps(ann))
    effusion = np.zeros((ROWS, COLS), dtype=bool)
    effusion[10:19, 10:21] = True  # vertices on pixel centres, edges included
    effusion[12:16, 13:17] = False  # the hole, its edges excluded
    placed = np.zeros((ROWS, COLS), dtype=bool)
    placed[11:16, 7:13] = small
    return {"lesion": lesion, "effusion": effusion, "small": placed}


def test_bitmap_decodes_exactly_as_encoded():
    rng = np.random.default_rng(3)
    for shape in [(1, 1), (3, 7), (16, 5), (33, 40)]:
        mask = rng.random(shape) > 0.5
        mask[0, 0] = mask[-1, -1] = True
        assert np.array_equal(decode_bitmap(sdk_bitmap(mask)["data"]), mask)
        assert np.array_equal(decode_bitmap(other_bitmap(mask, "RGBA")), mask)
        assert np.array_equal(decode_bitmap(other_bitmap(mask, "L")), mask)
        assert np.array_equal(decode_bitmap(other_bitmap(mask, "L", compress=False)), mask)


def test_polygon_hand_checked():
    square = fill_polygon(np.array([[1, 1], [3, 1], [3, 3], [1, 3]]), (5, 5))
    assert np.argwhere(square).tolist() == [[r, c] for r in (1, 2, 3) for c in (1, 2, 3)]
    triangle = fill_polygon(np.array([[0, 0], [4, 0], [0, 4]]), (6, 6))
    assert [row.sum() for row in triangle] == [5, 4, 3, 2, 1, 0]  # centres with x + y <= 4
    assert triangle[4, 0] and not triangle[3, 2]
    apex = fill_polygon(np.array([[2.0, 0.0], [4.0, 2.0], [0.0, 2.0]]), (4, 6))
    assert apex.astype(int).tolist() == [[0, 0, 1, 0, 0, 0], [0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [0] * 6]
    half = fill_polygon(np.array([[0.5, 0.5], [2.5, 0.5], [2.5, 1.5], [0.5, 1.5]]), (3, 4))
    assert np.argwhere(half).tolist() == [[1, 1], [1, 2]]  # only centres inside count
    clipped = fill_polygon(np.array([[-5, -5], [1, -5], [1, 1], [-5, 1]]), (4, 4))
    assert np.argwhere(clipped).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_project_found_and_loaded(tmp_path):
    expected = write_project(tmp_path)
    assert [(a.name, f) for a, f in find_sources(tmp_path)] == [("supervisely", tmp_path)]
    with pytest.warns(UserWarning, match="skipped 1 objects"):
        a, b, c = supervisely.load(tmp_path)
    assert [s.uid for s in (a, b, c)] == [
        "supervisely/ds0/img/a.png",
        "supervisely/ds0/img/b.png",
        "supervisely/nested/ds1/img/c.png",
    ]
    assert (a.findings, b.findings, c.findings) == (
        ("device", "effusion", "lesion"),
        ("no finding",),
        ("lesion",),
    )
    assert (a.patient_id, b.patient_id) == ("supervisely:a", "supervisely:P1")
    assert (b.extra["tags"], c.extra["dataset"]) == ("patient_id", "nested/ds1")
    assert a.masks.classes == ("lesion", "effusion", "device")
    masks = a.masks.load()
    assert np.array_equal(masks.layers["lesion"], expected["lesion"])
    assert np.array_equal(masks.layers["effusion"], expected["effusion"])
    assert not masks.layers["device"].any()
    assert a.boxes == (
        (3.0, 2.0, 12.0, 9.0, "lesion"),
        (10.0, 10.0, 21.0, 19.0, "effusion"),
        (2.0, 12.0, 7.0, 15.0, "device"),  # [6,14] [2,12]: columns 2-6, rows 12-14
    )
    assert masks.ignore is not None and np.argwhere(masks.ignore).min(0).tolist() == [12, 2]
    assert int(masks.ignore.sum()) == 3 * 5
    assert np.array_equal(c.masks.load().layers["lesion"], expected["small"])
    negative = b.masks.load()
    assert not any(layer.any() for layer in negative.layers.values()) and negative.ignore is None


def test_instances_hand_over_to_coco_exactly(tmp_path):
    write_project(tmp_path / "sly")
    with pytest.warns(UserWarning):
        samples = supervisely.load(tmp_path / "sly")
    predictions = [ImagePrediction(s.path.name, COLS, ROWS, s.masks.instances()) for s in samples[:2]]
    dataset, _ = export_coco(predictions, tmp_path / "gt.json", categories=["lesion", "effusion", "device"])
    back = coco.load_coco(dataset, tmp_path / "sly" / "ds0" / "img")
    for old, new in zip(samples[:2], back, strict=True):
        assert new.boxes == old.boxes and new.findings == old.findings
        for layer, values in old.masks.load().layers.items():
            assert np.array_equal(new.masks.load().layers[layer], values)


def _edit(folder: Path, relative: str, change) -> Path:
    path = folder / relative
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("relative", "change", "message"),
    [
        (
            "ds0/ann/a.png.json",
            lambda d: d["objects"][0].update(classTitle="tumour"),
            r"objects\[0\] \('tumour'\)",
        ),
        (
            "ds0/ann/a.png.json",
            lambda d: d["objects"][0]["bitmap"].update(data="bm90IGEgcG5n"),
            "not a .*PNG",
        ),
        ("ds0/ann/a.png.json", lambda d: d["objects"][0]["bitmap"].update(origin=[1.5, 2]), "origin"),
        (
            "ds0/ann/a.png.json",
            lambda d: d["objects"][1]["points"].update(exterior=[]),
            r"objects\[1\].*non-empty",
        ),
        ("ds0/ann/a.png.json", lambda d: d["objects"][2]["points"]["exterior"].pop(), "exactly 2 exterior"),
        ("ds0/ann/b.json", lambda d: d.pop("size"), "needs 'size'"),
        ("meta.json", lambda d: d["classes"].append(d["classes"][0]), r"classes\[4\]: duplicate class title"),
    ],
)
def test_bad_annotations_name_file_and_object(tmp_path, relative, change, message):
    write_project(tmp_path)
    path = _edit(tmp_path, relative, change)
    with pytest.raises(ChestlensInputError, match=message) as caught:
        supervisely.load(tmp_path)
    assert caught.value.path == str(path)


def test_missing_and_unreadable_files(tmp_path):
    write_project(tmp_path)
    (tmp_path / "ds0" / "ann" / "b.json").write_text("{oops")
    with pytest.raises(ChestlensInputError, match=r"b\.json: not a readable JSON file"):
        supervisely.load(tmp_path)
    (tmp_path / "ds0" / "ann" / "b.json").unlink()
    with pytest.raises(ChestlensInputError, match=r"img/b\.png: no annotation file ann/b\.png\.json"):
        supervisely.load(tmp_path)
    (tmp_path / "ds0" / "img" / "b.png").unlink()
    (tmp_path / "ds0" / "img" / "a.png").unlink()
    with pytest.raises(ChestlensInputError, match=r"a\.png\.json: annotation file without its image"):
        supervisely.load(tmp_path)


def test_detect_is_specific(tmp_path):
    write_project(tmp_path)
    assert supervisely.detect(tmp_path) and not supervisely.detect(tmp_path / "ds0")
    (tmp_path / "meta.json").unlink()
    assert not supervisely.detect(tmp_path)


@pytest.mark.shared_data
def test_real_data_root_not_claimed(shared_data):
    folders = [shared_data, *(p for p in shared_data.iterdir() if p.is_dir())]
    assert [f.name for f in folders if supervisely.detect(f)] == []
    assert find_sources(shared_data, names=["supervisely"]) == []
