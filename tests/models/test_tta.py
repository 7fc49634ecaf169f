"""Test-time augmentation (``preprocess.tta``: flips and one-stride rescalings): the same averaged logits in
the graph (CLI, server, ONNX, browser) and in evaluation; a flip-symmetric input gives a flip-symmetric map;
classifiers refuse it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bundle_kinds import make_tiny, with_fields
from chestlens.data.transforms import normalise
from chestlens.errors import ChestlensInputError
from chestlens.models.bundle import load_bundle, save_bundle
from chestlens.models.graphs import build_graph
from chestlens.models.inference import iter_logits

pytestmark = pytest.mark.usefixtures("one_thread")


def _bundle(tmp_path, tta):
    spec, model = make_tiny("segmenter")
    spec = with_fields(spec, preprocess={**spec.preprocess.model_dump(), "tta": tta})
    return load_bundle(save_bundle(spec, model.state_dict(), tmp_path / "seg")), model


def test_graph_and_evaluation_average_the_same_flipped_logits(tmp_path):
    bundle, model = _bundle(tmp_path, ("hflip", "vflip"))
    image = torch.rand(2, 1, 64, 64)
    x = normalise(image, bundle.spec.preprocess)
    with torch.no_grad():
        expected = (model(x) + model(x.flip(-1)).flip(-1) + model(x.flip(-2)).flip(-2)) / 3
        graph = build_graph(bundle)(image)
        evaluated = next(iter_logits(bundle.build_model(), image, bundle.spec.preprocess))
    torch.testing.assert_close(evaluated, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(graph, expected.softmax(1), atol=1e-5, rtol=0)
    plain, _ = _bundle(tmp_path / "plain", ())
    with torch.no_grad():
        assert (build_graph(plain)(image) - graph).abs().max() > 1e-4  # the flips change the output


def test_graph_and_evaluation_average_the_same_rescaled_logits(tmp_path):
    """``scale_up`` / ``scale_down``: the network reads the input one stride (32 px) larger / smaller per
    side, and its logits are resized back onto the input grid before the average."""
    bundle, model = _bundle(tmp_path, ("scale_up", "scale_down"))
    image = torch.rand(2, 1, 64, 64)
    x = normalise(image, bundle.spec.preprocess)

    def rescaled(size: int) -> torch.Tensor:
        resize = {"mode": "bilinear", "align_corners": False}
        return F.interpolate(model(F.interpolate(x, size=(size, size), **resize)), size=(64, 64), **resize)

    with torch.no_grad():
        expected = (model(x) + rescaled(96) + rescaled(32)) / 3
        graph = build_graph(bundle)(image)
        evaluated = next(iter_logits(bundle.build_model(), image, bundle.spec.preprocess))
    torch.testing.assert_close(evaluated, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(graph, expected.softmax(1), atol=1e-5, rtol=0)


def test_a_mirror_symmetric_image_gives_a_mirror_symmetric_map(tmp_path):
    bundle, _ = _bundle(tmp_path, ("hflip",))
    half = torch.rand(1, 1, 64, 32)
    image = torch.cat([half, half.flip(-1)], dim=-1)
    with torch.no_grad():
        probabilities = build_graph(bundle)(image)
    torch.testing.assert_close(probabilities, probabilities.flip(-1), atol=1e-5, rtol=0)


def test_classifier_logits_are_not_flipped(tmp_path):
    spec, model = make_tiny("classifier")
    preprocess = spec.preprocess.model_copy(update={"tta": ("hflip",)})
    with pytest.raises(ChestlensInputError, match="applies to segmenters only"):
        next(iter_logits(model, torch.rand(1, 1, 32, 32), preprocess))


@pytest.mark.slow  # one ONNX export each, about 15 s
@pytest.mark.parametrize("tta", [("hflip",), ("scale_up", "scale_down")])
def test_onnx_graph_applies_the_augmentations(tmp_path, tta):
    import numpy as np
    import onnxruntime as ort

    from chestlens.export.onnx_export import export_fp32

    bundle, _ = _bundle(tmp_path, tta)
    exported = export_fp32(bundle, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    image = torch.rand(1, 1, 70, 90)
    with torch.no_grad():
        reference = build_graph(bundle)(image).numpy()
    np.testing.assert_allclose(session.run(None, {"image": image.numpy()})[0], reference, atol=1e-4)


@pytest.mark.parametrize("tta", [("hflip",), ("scale_down",)])
def test_the_graph_parity_reference_applies_the_augmentations(tmp_path, tta):
    """The PyTorch reference that every exported graph is verified against (``chestlens export graph``, the
    trainers' graph check) averages the same flips as the graph: a flipped bundle's graph is not refused
    as differing from it."""
    import numpy as np

    from chestlens.export.verify import VerificationSet, torch_probabilities

    bundle, _ = _bundle(tmp_path, tta)
    units = [np.random.default_rng(k).random((1, 70, 90), dtype=np.float32) for k in range(2)]
    reference = torch_probabilities(bundle, VerificationSet(units, None, "random"))
    with torch.no_grad():
        graph = torch.cat([build_graph(bundle)(torch.from_numpy(u)[None]) for u in units]).numpy()
    np.testing.assert_allclose(reference, graph, atol=1e-5)
