"""COVID-CT-Mask-Net style regional classifier: inputs, invariances, training, the 2- and 3-class paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from chestlens.data.registry import load_samples
from chestlens.data.tasks import get_task, map_label
from chestlens.errors import ChestlensInputError
from chestlens.io import lung_window, read_image
from chestlens.models.detection import create_detector, detections_with_features, get_detector_config
from chestlens.models.regional import RegionalClassifier, region_inputs

pytestmark = pytest.mark.usefixtures("one_thread")


K, DIM = 8, 16
TINY = {
    "min_size": 64,
    "max_size": 64,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 30,
    "box_detections_per_img": K,
    "box_score_thresh": 0.0,
}


def _detections(n: int, generator: torch.Generator, size: int = 100) -> dict[str, torch.Tensor]:
    corner = torch.rand(n, 2, generator=generator) * size / 2
    return {
        "boxes": torch.cat([corner, corner + 1 + torch.rand(n, 2, generator=generator) * size / 2], dim=1),
        "scores": torch.rand(n, generator=generator),
        "labels": torch.randint(1, 3, (n,), generator=generator),
        "features": torch.randn(n, DIM, generator=generator),
    }


def test_region_inputs_rank_normalise_pad_and_cut():
    g = torch.Generator().manual_seed(0)
    detections = [_detections(3, g), _detections(0, g), _detections(12, g)]
    inputs = region_inputs(detections, [(100, 200), (50, 50), (100, 100)], k=K)
    assert inputs.boxes.shape == (3, K, 4) and inputs.features.shape == (3, K, DIM)
    assert inputs.labels.dtype == torch.int64 and inputs.mask.dtype == torch.bool
    assert inputs.mask.sum(1).tolist() == [3, 0, K]
    order = torch.argsort(detections[0]["scores"], descending=True)
    torch.testing.assert_close(inputs.scores[0, :3], detections[0]["scores"][order])
    torch.testing.assert_close(
        inputs.boxes[0, :3], detections[0]["boxes"][order] / torch.tensor([200, 100, 200, 100])
    )
    torch.testing.assert_close(inputs.scores[2], detections[2]["scores"].sort(descending=True).values[:K])
    assert inputs.labels[1].tolist() == [0] * K and not inputs.features[1].any()
    with pytest.raises(ChestlensInputError, match="feature dimension"):
        region_inputs([_detections(0, g)], [(10, 10)], k=K)
    assert region_inputs([_detections(0, g)], [(10, 10)], k=K, feature_dim=DIM).features.shape == (1, K, DIM)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_logits_shape(num_classes):
    g = torch.Generator().manual_seed(1)
    model = RegionalClassifier(num_classes, K, DIM).eval()
    inputs = region_inputs([_detections(5, g), _detections(0, g)], [(100, 100)] * 2, k=K)
    logits = model(*inputs)
    assert logits.shape == (2, num_classes) and torch.isfinite(logits).all()  # no region: still defined


def test_padding_does_not_change_the_output():
    g = torch.Generator().manual_seed(2)
    model = RegionalClassifier(3, K, DIM).eval()
    detections = [_detections(3, g), _detections(5, g)]
    long = region_inputs(detections, [(100, 100)] * 2, k=K)
    short = region_inputs(detections, [(100, 100)] * 2, k=5)
    garbage = long._replace(
        features=torch.where(long.mask[..., None], long.features, torch.randn(2, K, DIM, generator=g) * 100),
        scores=torch.where(long.mask, long.scores, torch.ones(2, K)),
    )
    with torch.no_grad():
        reference = model(*long)
        torch.testing.assert_close(model(*short), reference, rtol=0, atol=1e-6)
        torch.testing.assert_close(model(*garbage), reference, rtol=0, atol=1e-6)
    with pytest.raises(ChestlensInputError, match="at most 8"):
        model(*region_inputs(detections, [(100, 100)] * 2, k=K + 1))
    with pytest.raises(ChestlensInputError, match=r"1..2 \(detector classes\)"):
        model(*long._replace(labels=long.labels + 2))


def test_region_order_does_not_matter():
    g = torch.Generator().manual_seed(3)
    model = RegionalClassifier(2, K, DIM).eval()
    inputs = region_inputs([_detections(6, g)], [(100, 100)], k=K)
    perm = torch.tensor([5, 2, 0, 4, 1, 3, 6, 7])  # shuffles the 6 real regions, padding stays put
    shuffled = type(inputs)(*(t[:, perm] for t in inputs))
    with torch.no_grad():
        torch.testing.assert_close(model(*shuffled), model(*inputs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_training_separates_a_synthetic_problem(num_classes):
    """Class c images hold 1-6 regions whose features are shifted along axis c: learnable in a few steps."""
    g = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    y = torch.arange(48) % num_classes
    detections = []
    for c in y.tolist():
        d = _detections(int(torch.randint(1, 7, (1,), generator=g)), g)
        d["features"][:, c] += 2.0
        detections.append(d)
    inputs = region_inputs(detections, [(100, 100)] * len(y), k=K)
    model = RegionalClassifier(num_classes, K, DIM, dropout=0.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        optimiser.zero_grad()
        loss = F.cross_entropy(model(*inputs), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    with torch.no_grad():
        assert (model(*inputs).argmax(1) == y).float().mean() > 0.9


def _train_step_on_images(images: list[torch.Tensor], y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Frozen random detector -> top-K regions -> one classifier step; returns the logits."""
    torch.manual_seed(0)
    detector = create_detector("maskrcnn_resnet18_fpn", 3, **TINY).eval()
    with torch.no_grad():
        detections = detections_with_features(detector, images, k=K)
    dim = get_detector_config("maskrcnn_resnet18_fpn").representation_size
    inputs = region_inputs(detections, [tuple(im.shape[-2:]) for im in images], k=K, feature_dim=dim)
    classifier = RegionalClassifier(num_classes, K, dim)
    logits = classifier(*inputs)
    F.cross_entropy(logits, y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in classifier.parameters())
    torch.optim.SGD(classifier.parameters(), lr=0.1).step()
    return logits


def test_three_classes_on_covidx_ct_style_data(tmp_path):
    """The ct3 path on a COVIDx-CT layout (CNCB file names): load, label, read, detect, classify, step."""
    rng = np.random.default_rng(0)
    for name in ("NCP_328_1805_0042.png", "CP_1070_3112_0032.png", "Normal_2_51_0001.png"):
        Image.fromarray(rng.integers(0, 256, (96, 80), dtype=np.uint8)).save(tmp_path / name)
    samples = sorted(load_samples(tmp_path, ["covidx_ct"]), key=lambda s: s.path.name)
    classes = get_task("ct3").classes
    y = torch.tensor([classes.index(map_label("ct3", s)) for s in samples])
    assert [classes[i] for i in y] == ["CAP", "COVID-19", "normal"]
    images = [torch.from_numpy(read_image(s.path).pixels)[None] for s in samples]
    assert images[0].shape == (1, 96, 80) and 0.0 <= float(images[0].min()) <= float(images[0].max()) <= 1.0
    assert _train_step_on_images(images, y, len(classes)).shape == (3, 3)


@pytest.mark.shared_data
def test_slice_infection_on_real_covid_ct_md(source_dir):
    """The 2-class path on COVID-CT-MD slice labels: 2 infected and 2 clean slices of the real series."""
    from chestlens.data.sources.covid_ct_md import slice_labels

    (series,) = [
        s for s in load_samples(source_dir("covid-ct-md"), ["covid_ct_md"]) if s.findings == ("COVID-19",)
    ]
    labels = slice_labels(series)
    chosen = [s for s in labels if s.infected][:2] + [s for s in labels if not s.infected][-2:]
    images = [torch.from_numpy(lung_window(read_image(s.file).pixels))[None] for s in chosen]
    y = torch.tensor([int(s.infected) for s in chosen])
    assert y.tolist() == [1, 1, 0, 0] and images[0].shape == (1, 512, 512)
    assert _train_step_on_images(images, y, 2).shape == (4, 2)
