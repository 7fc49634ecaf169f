"""Sources with masks on the real data: V7 lungs, GeneralBlockchain per-class masks, Inf-Net CT."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from chestlens.data import tasks
from chestlens.data.sources import generalblockchain, infnet, v7_lungs
from chestlens.errors import ChestlensInputError


@pytest.fixture(scope="module")
def v7(source_dir):
    return v7_lungs.load(source_dir(v7_lungs.FOLDER))


@pytest.fixture(scope="module")
def gb(source_dir):
    return generalblockchain.load(source_dir(generalblockchain.FOLDER))


def test_v7_counts_and_mapping(v7, source_dir):
    assert len(v7) == 162
    assert len({i for s in v7 for i in s.extra["patientids"].split("|")}) == 86
    assert len({s.patient_id for s in v7}) == 85  # 331a and 331b merged (trailing letter)
    assert Counter(s.view for s in v7) == {"PA": 83, "AP Supine": 52, "AP": 27}
    mapping = v7_lungs.mask_filenames(source_dir(v7_lungs.FOLDER))
    assert mapping["1676192"] == "0a7faa2a.jpg"
    first = next(s for s in v7 if s.extra["v7_image_id"] == "1676192")
    assert first.path.name == "0a7faa2a.jpg"
    assert first.patient_id == "ieee8023:263" and first.extra["image_key"] == "hannover:0a7faa2a"
    assert sum(s.extra["image_key"].startswith("hannover:") for s in v7) == 74


def test_v7_masks(v7):
    fractions, with_ignore = [], 0
    for sample in v7[::4]:
        masks = sample.masks.load()
        lung = masks.layers["lung"]
        assert lung.shape == Image.open(sample.path).size[::-1]
        assert not (lung & masks.ignore).any()
        fractions.append(lung.mean())
        with_ignore += bool(masks.ignore.any())
    assert min(fractions) > 0.15 and max(fractions) < 0.6
    assert with_ignore > 0


def test_generalblockchain_counts(gb):
    assert len(gb) == 36
    assert len({s.patient_id for s in gb}) == 31
    per_class = Counter(c for s in gb for c in s.masks.classes)
    assert per_class["ggo"] == 35 and per_class["consolidation"] == 10
    assert per_class["pneumothorax"] == 1 and per_class["effusion"] == 1
    assert all(s.patient_id.startswith("ieee8023:") for s in gb)
    assert all(s.boxes for s in gb)


def test_generalblockchain_masks_in_frame(gb):
    inside, total = 0, 0
    for sample in gb:
        masks = sample.masks.load()
        rows, cols = Image.open(sample.path).size[::-1]
        assert all(layer.shape == (rows, cols) for layer in masks.layers.values())
        single = [b for b in sample.boxes if sum(o[4] == b[4] for o in sample.boxes) == 1]
        for x0, y0, x1, y1, cls in single:
            ys, xs = np.nonzero(masks.layers[cls])
            assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
        lungs = tasks.target_mask("lungs", masks)
        if "ggo" in masks.layers and lungs is not None:
            inside += int((masks.layers["ggo"] & lungs).sum())
            total += int(masks.layers["ggo"].sum())
    assert inside / total > 0.9


def test_generalblockchain_rejects_wrong_box(tmp_path):
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "image.png")
    Image.fromarray(np.full((4, 5, 4), 255, np.uint8)).save(tmp_path / "mask.png")
    crop = generalblockchain.Crop("ggo", tmp_path / "mask.png", top=8, left=0, height=4, width=5)
    masks = generalblockchain.ClassMasks(tmp_path / "image.png", (10, 20), (crop,), ("ggo",))
    with pytest.raises(ChestlensInputError, match="outside"):
        masks.load()
    wrong_frame = generalblockchain.ClassMasks(tmp_path / "image.png", (20, 10), (crop,), ("ggo",))
    with pytest.raises(ChestlensInputError, match="Resolution"):
        wrong_frame.load()


def test_infnet(source_dir):
    samples = infnet.load(source_dir(infnet.FOLDER))
    assert len(samples) == 83
    assert Counter(s.extra["official_split"] for s in samples) == {"train": 41, "test": 42}
    assert all("LungInfection" in s.extra["sets"] for s in samples)  # repeated slices not double-counted
    assert all(s.extra["display_quarter_turns"] == "1" for s in samples)  # stored spine-right
    ggo = consolidation = 0
    for sample in samples:
        masks = sample.masks.load()
        assert masks.layers["ggo"].shape == Image.open(sample.path).size[::-1]
        assert (masks.layers["infection"] == (masks.layers["ggo"] | masks.layers["consolidation"])).all()
        ggo += int(masks.layers["ggo"].sum())
        consolidation += int(masks.layers["consolidation"].sum())
    assert (ggo, consolidation) == (1_008_577, 330_637)
    assert len({s.patient_id for s in samples}) == 83
