"""The shortcut audit: masked views are what they claim, the audit runs on real images through the
classifier's own preprocessing, measures within-source AUCs per view and a source probe, and renders
them first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import chestlens
from chestlens.cli import app
from chestlens.data.records import Sample
from chestlens.data.registry import load_samples
from chestlens.data.tasks import get_task
from chestlens.data.tensors import decode_images
from chestlens.evaluate import apply_temperature, evaluate_classifier, write_report
from chestlens.evaluate.bootstrap import estimate_text
from chestlens.evaluate.shortcut_audit import (
    VARIANTS,
    CamInLungs,
    ShortcutAudit,
    ViewResult,
    audit_classifier,
    audit_markdown,
    images_with_lungs,
    masked_variants,
)
from chestlens.evaluate.source_probe import SourceProbe
from chestlens.evaluate.within_source import strata_of, within_source_report
from chestlens.models.bundle import Bundle, load_bundle
from chestlens.models.catalog import resolve_bundle
from chestlens.models.inference import predict_logits
from chestlens.models.spec import read_spec
from chestlens.preprocess.spec import PreprocessSpec

LABELS = ["COVID-19", "pneumonia", "normal"]


def test_masked_views_replace_exactly_the_dilated_lungs_or_the_rest():
    images = torch.rand(2, 1, 64, 64)
    masks = np.zeros((2, 64, 64), dtype=bool)
    masks[:, 20:40, 10:30] = True
    views = masked_variants(images, masks)
    assert list(views) == list(VARIANTS)
    assert torch.equal(views["full image"], images)
    fill = images.mean(dim=(1, 2, 3))
    # 3% of 64 px = a 2-pixel dilation: (18..41, 8..31) replaced, far corners kept
    assert torch.allclose(views["lungs masked out"][:, 0, 30, 20], fill)
    assert torch.allclose(views["lungs masked out"][:, 0, 18, 20], fill)
    assert torch.equal(views["lungs masked out"][:, 0, 0, 63], images[:, 0, 0, 63])
    assert torch.equal(views["lungs only"][:, 0, 30, 20], images[:, 0, 30, 20])
    assert torch.allclose(views["lungs only"][:, 0, 0, 63], fill)


@pytest.mark.slow
def test_audit_of_the_bundled_screener_on_real_images(shared_data):
    task = get_task("xray3")
    picked, seen = [], {}
    for sample in sorted(load_samples(shared_data, ["hannover", "kermany"]), key=lambda s: s.uid):
        label = task.mapping(sample)
        if label is not None and seen.get(label, 0) < 4:
            seen[label] = seen.get(label, 0) + 1
            picked.append((sample, label, sample.patient_id))
    result = audit_classifier(
        chestlens.load("xray3-screener"), chestlens.load("lungs-segmenter"), picked, n_boot=10
    )
    assert set(result["variants"]) == set(VARIANTS) and result["n_images"] == 12
    for view in result["variants"].values():
        assert 0.0 <= view["macro_auc"]["value"] <= 1.0
    assert 0.0 <= result["cam_in_lungs"]["mean"] <= 1.0
    text = "\n".join(audit_markdown(result))
    assert "## Shortcut audit" in text and "lungs masked out" in text


KERMANY = ("kermany-chest-xray", "chest_xray", "train")
N_BOOT = 10


def _items(shared_data: Path) -> list[tuple[Sample, str, str]]:
    """16 radiographs relabelled over the three classes, from two sources, one patient each: "a" and
    "actualmed", whose AP images are pneumonia and COVID-19 and PA images normal and pneumonia."""
    folder = shared_data.joinpath(*KERMANY)
    items = []
    for name in ("NORMAL", "PNEUMONIA"):
        for i, path in enumerate(sorted((folder / name).iterdir())[:8]):
            source = "actualmed" if i % 2 else "a"
            sample = Sample(
                source=source,
                uid=f"{source}/{path.name}",
                path=path,
                patient_id=f"{source}:{path.stem}",
                findings=(),
                modality="xray",
                view="AP" if i < 4 else "PA",
            )
            items.append((sample, LABELS[i % 3], sample.patient_id))
    return items


@pytest.fixture(scope="module")
def lungs():
    return chestlens.load("lungs-segmenter")


def _classifier(make, lung_roi: str, equalise: str) -> Bundle:
    preprocess = PreprocessSpec(input_size=32, mean=[0.5], std=[0.5], lung_roi=lung_roi, equalise=equalise)
    return load_bundle(make(preprocess=preprocess, temperature=1.5))


@pytest.mark.slow
@pytest.mark.parametrize(("lung_roi", "equalise"), [("none", "none"), ("mask", "clahe")])
def test_audit_measures_within_source_auc_per_view_and_probes_the_source(
    shared_data, lungs, tiny_classifier_bundle, one_thread, lung_roi, equalise
):
    items = _items(shared_data)
    classifier = _classifier(tiny_classifier_bundle, lung_roi, equalise)
    result = audit_classifier(classifier, lungs, items, n_boot=N_BOOT)
    audit = ShortcutAudit.model_validate(json.loads(json.dumps(result)))  # JSON-ready and typed
    data, masks = images_with_lungs(items, LABELS, classifier.spec.preprocess, lungs)
    assert masks.shape == (16, 32, 32) and masks.any()
    model = classifier.build_model()
    strata = strata_of(data.sources, data.views)
    for name, images in masked_variants(data.images, masks).items():
        probs = apply_temperature(predict_logits(model, images, classifier.spec.preprocess).numpy(), 1.5)
        expected = within_source_report(
            data.targets.numpy(), probs, LABELS, strata, data.patient_ids, n_boot=N_BOOT, seed=0
        )
        assert audit.variants[name].within_source == expected
    pooled = {s.stratum for r in audit.variants["full image"].within_source for s in r.strata}
    # COVID-19 vs rest: actualmed's PA images hold no COVID-19, so that stratum adds no pair
    assert audit.variants["full image"].within_source[0].excluded == ["actualmed / PA"]
    assert pooled == {"a", "actualmed / AP", "actualmed / PA"}
    probe = audit.source_probe
    assert probe.n_images == 16 and probe.n_sources == 2 and probe.majority_rate == 0.5
    assert probe.accuracy is not None and 0.0 <= probe.accuracy <= 1.0
    assert list(audit.cam_in_lungs.mean_by_true_class) == LABELS


def test_images_go_through_the_classifier_preprocessing(shared_data, lungs, one_thread):
    items = _items(shared_data)[:4]
    plain = PreprocessSpec(input_size=32, mean=[0.5], std=[0.5])
    data, masks = images_with_lungs(items, LABELS, plain, lungs)
    assert torch.equal(data.images, decode_images([Path(s.path) for s, _, _ in items], plain))
    cropped = plain.model_copy(update={"lung_roi": "crop"})
    crop_data, crop_masks = images_with_lungs(items, LABELS, cropped, lungs)
    assert crop_data.images.shape == data.images.shape and crop_masks.shape == masks.shape
    # cropped to the lungs' box: the lungs fill more of the grid than in the whole radiograph
    assert crop_masks.mean() > masks.mean()
    assert data.views == ("AP",) * 4 and data.sources == ("a", "actualmed", "a", "actualmed")


@pytest.mark.slow
def test_audit_cli_stores_the_audit_and_puts_it_first_in_the_card(
    shared_data, tiny_classifier_bundle, synthetic, tmp_path
):
    data = tmp_path / "hospital"
    for label, name in (("normal", "NORMAL"), ("pneumonia", "PNEUMONIA")):
        (data / label).mkdir(parents=True)
        for image in sorted(shared_data.joinpath(*KERMANY, name).iterdir())[:4]:
            shutil.copy(image, data / label / image.name)
    preprocess = PreprocessSpec(input_size=32, mean=[0.5], std=[0.5], lung_roi="crop")
    bundle = tiny_classifier_bundle(preprocess=preprocess)
    p = synthetic(40, seed=2)
    report = evaluate_classifier(p.y, p.probs, p.labels, p.patients, p.sources, n_boot=0)
    test_report = write_report(report, {}, tmp_path / "test-report", title="t", model_info={}, data_info={})
    args = ["audit", str(bundle), "--data", str(data), "--out", str(tmp_path / "audit"), "--n-boot", "5"]
    result = CliRunner().invoke(app, [*args, "--save", "--report", str(test_report["json"])])
    assert result.exit_code == 0, (result.output, result.exception)
    stored = ShortcutAudit.model_validate(read_spec(bundle).metrics["shortcut_audit"])
    assert stored.n_images == 8 and stored.source_probe.reason  # one source: nothing to probe
    assert [r.question for r in stored.variants["lungs masked out"].within_source][
        -1
    ] == "pneumonia vs normal"
    markdown = (tmp_path / "audit" / "audit.md").read_text()
    assert "### Within-source AUC by view" in markdown and "### Within-source AUC by view" in result.output
    card = (bundle / "MODEL_CARD.md").read_text()
    assert card.index("## Within-source AUC (test split") < card.index("### Within-source AUC by view")
    assert card.index("### Source probe") < card.index("## Model\n") < card.index("## Pooled test results")


def _audit(synthetic) -> ShortcutAudit:
    """An audit with every section from synthetic predictions: the lungs-only view reads the lungs, the
    masked-out view does not."""
    views = {}
    for name, signal in zip(VARIANTS, (2.0, 0.0, 1.5), strict=True):
        p = synthetic(60, signal=signal, seed=5)
        report = evaluate_classifier(p.y, p.probs, p.labels, p.patients, p.sources, n_boot=N_BOOT)
        views[name] = ViewResult(
            macro_auc=report.overall.macro_auc,
            per_class_auc={c.label: c.auc for c in report.overall.per_class},
            accuracy=report.overall.accuracy,
            within_source=report.within_source,
        )
    return ShortcutAudit(
        variants=views,
        cam_in_lungs=CamInLungs(
            mean=0.4,
            median=0.45,
            share_of_images_below_half=0.6,
            mean_by_true_class=dict(zip(LABELS, (0.3, None, 0.5), strict=True)),
        ),
        source_probe=SourceProbe(
            accuracy=0.9, majority_rate=0.6, excess=0.3, n_images=90, n_sources=3, folds=5
        ),
        n_images=90,
        n_patients=60,
        dilation_fraction=0.03,
        lung_segmenter="lungs-segmenter 0.1.0",
    )


def test_markdown_leads_with_within_source_auc_per_view(synthetic):
    audit = _audit(synthetic)
    text = "\n".join(audit_markdown(audit.model_dump(mode="json")))
    order = [
        "### Within-source AUC by view",
        "### Source probe",
        "### Pooled AUC by view (includes between-source pairs)",
        "### Grad-CAM mass in the lungs",
    ]
    assert [text.index(h) for h in order] == sorted(text.index(h) for h in order)
    (row,) = [line for line in text.splitlines() if line.startswith("| pneumonia vs normal |")]
    cells = [estimate_text(audit.variants[v].within_source[-1].pooled) for v in VARIANTS]
    assert row == "| pneumonia vs normal | " + " | ".join(cells) + " |"
    assert "| question | full image | lungs masked out | lungs only |" in text
    assert "accuracy 0.900, against 0.600" in text and "+0.300" in text
    assert "| COVID-19 | 0.30 |" in text and "| pneumonia | n/a |" in text and "| normal | 0.50 |" in text


def test_markdown_of_an_audit_stored_before_within_source_and_the_probe():
    stored = read_spec(resolve_bundle("xray3-screener")).metrics["shortcut_audit"]
    stored = {k: v for k, v in stored.items() if k != "source_probe"}  # as audits made before them
    stored["variants"] = {
        name: {k: v for k, v in view.items() if k != "within_source"}
        for name, view in stored["variants"].items()
    }
    text = "\n".join(audit_markdown(stored))
    assert "Not measured by this audit (made before within-source AUCs)" in text
    assert "Not measured by this audit (made before the source probe)" in text
    assert "| full image | 0.974 [0.953, 0.987] |" in text and "| COVID-19 | 0.42 |" in text
