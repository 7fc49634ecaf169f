"""The shared test base every bundle kind passes (in the spirit of segmentation_models_pytorch's
``tests/models/base.py``): one :class:`KindContract` with a kind's ``run`` and ``compare``, subclassed in
a few lines per kind; the tiny specs and networks come from ``tests/bundle_kinds.py``.

Every kind: registered in both halves (models and evaluation) and in ``BundleSpec``; a grey input of any
resolution gives outputs of the expected shape; a save/load round trip gives the same outputs; fp16
storage stays close; the ONNX graph (kinds that have one) matches PyTorch, and kinds without one are
refused in one line.
"""

from __future__ import annotations

import typing

import numpy as np
import pytest
import torch

from bundle_kinds import TINY_KINDS, make_tiny
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.kinds import EVALUATIONS
from chestlens.models.bundle import load_bundle, save_bundle
from chestlens.models.graphs import build_graph
from chestlens.models.kinds import KINDS
from chestlens.models.spec import BundleSpec

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_kind_is_registered_in_both_halves_and_has_a_contract():
    literal = set(typing.get_args(BundleSpec.model_fields["kind"].annotation))
    assert set(KINDS.names()) == set(EVALUATIONS.names()) == literal == set(TINY_KINDS)
    tested = {cls.kind for cls in KindContract.__subclasses__()}
    assert tested == set(KINDS.names())


def test_an_unknown_kind_is_one_line():
    with pytest.raises(ChestlensInputError, match="unknown bundle kind 'volume'; known: classifier"):
        KINDS.get("volume")


class KindContract:
    """Tests every bundle kind passes; a subclass sets ``kind`` and says how to run and compare."""

    kind: str
    #: the tiny bundle the tests build (a name of ``bundle_kinds.TINY_VARIANTS``; None: the kind's own)
    variant: str | None = None
    #: largest difference of the outputs after storing the weights as fp16
    fp16_tolerance = 2e-2
    #: graph outputs compared with PyTorch (None: all)
    parity_outputs: tuple[str, ...] | None = None

    def inputs(self, n: int, height: int = 64, width: int = 64) -> torch.Tensor:
        """What the kind's network reads: ``(N, 1, H, W)`` grey images in ``[0, 1]`` (a kind that reads
        features instead overrides this)."""
        return torch.rand(n, 1, height, width)

    def run(self, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """The kind's output for ``(N, 1, H, W)`` images in ``[0, 1]`` as one float tensor."""
        with torch.no_grad():
            return model(images).float()

    def expected_shape(self, spec: BundleSpec, n: int, height: int, width: int) -> tuple[int, ...]:
        return (n, len(spec.labels))

    def test_grey_input_of_any_resolution(self):
        spec, model = make_tiny(self.variant or self.kind)
        for height, width in ((64, 64), (96, 64)):
            out = self.run(model, self.inputs(2, height, width))
            assert tuple(out.shape) == self.expected_shape(spec, 2, height, width)
            assert torch.isfinite(out).all()

    def test_save_load_round_trip(self, tmp_path):
        spec, model = make_tiny(self.variant or self.kind)
        images = self.inputs(2)
        bundle = load_bundle(save_bundle(spec, model.state_dict(), tmp_path / "b"))
        assert bundle.spec.kind == self.kind and bundle.spec.weights_sha256
        torch.testing.assert_close(
            self.run(bundle.build_model(), images), self.run(model, images), rtol=0, atol=1e-6
        )

    def test_fp16_storage_stays_close(self, tmp_path):
        spec, model = make_tiny(self.variant or self.kind)
        images = self.inputs(2)
        bundle = load_bundle(save_bundle(spec, model.state_dict(), tmp_path / "half", fp16=True))
        assert bundle.spec.weights_dtype == "float16"
        difference = (self.run(bundle.build_model(), images) - self.run(model, images)).abs().max()
        assert difference < self.fp16_tolerance

    @pytest.mark.slow  # an ONNX export takes about 12 s
    def test_onnx_graph_matches_pytorch_or_is_refused(self, tmp_path):
        spec, model = make_tiny(self.variant or self.kind)
        bundle = load_bundle(save_bundle(spec, model.state_dict(), tmp_path / "b"))
        if KINDS.get(self.kind).graph is None:
            with pytest.raises(ChestlensInputError, match=f"a {self.kind} bundle has no inference graph"):
                build_graph(bundle)
            return
        import onnxruntime as ort

        from chestlens.export.onnx_export import export_fp32

        exported = export_fp32(bundle, tmp_path / "model.onnx")
        session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
        image = torch.rand(1, 1, 80, 72)
        with torch.no_grad():
            reference = build_graph(bundle)(image)
        reference = reference if isinstance(reference, tuple) else (reference,)
        outputs = session.run(None, {"image": image.numpy()})
        names = [o.name for o in session.get_outputs()]
        assert names == list(KINDS.get(self.kind).graph_outputs)
        for name, ours, theirs in zip(names, outputs, reference, strict=True):
            if self.parity_outputs is None or name in self.parity_outputs:
                np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4, err_msg=name)


class TestClassifier(KindContract):
    kind = "classifier"
    # a random network's class-activation map is nearly flat, so its min-max scaling amplifies rounding;
    # the maps of the trained bundles are compared across runtimes in tests/runtime/test_runtime_parity.py
    parity_outputs = ("logits", "probabilities")

    def run(self, model, images):
        with torch.no_grad():
            return model(images).softmax(1)


class TestSegmenter(KindContract):
    kind = "segmenter"

    def expected_shape(self, spec, n, height, width):
        return (n, len(spec.labels), height, width)

    def run(self, model, images):
        with torch.no_grad():
            return model(images).softmax(1)


class TestDetector(KindContract):
    kind = "detector"
    fp16_tolerance = 0.05  # on the kept detections' scores

    def expected_shape(self, spec, n, height, width):
        return (n, TINY_DETECTIONS)

    def run(self, model, images):
        """The top detection scores of each image, zero-padded (boxes checked in the round trip)."""
        with torch.no_grad():
            detections = model(list(images))
        scores = torch.zeros(len(images), TINY_DETECTIONS)
        for row, detection in zip(scores, detections, strict=True):
            kept = detection["scores"][:TINY_DETECTIONS]
            row[: len(kept)] = kept
        return scores


TINY_DETECTIONS = 12  # box_detections_per_img of the tiny detector


class TestRegional(KindContract):
    kind = "regional"
    fp16_tolerance = 0.05

    def run(self, model, images):
        with torch.no_grad():
            return model(images).softmax(1)


class TestRegionalOverSegmenter(TestRegional):
    """The regions are a lesion segmenter's connected components (no detector)."""

    variant = "regional over a segmenter"


class TestStudy(KindContract):
    """A study bundle reads lesion features, not images (no graph: refused in one line); screening runs it
    with numpy from the safetensors file, which must give PyTorch's numbers."""

    kind = "study"
    fp16_tolerance = 0.05

    def inputs(self, n, height=64, width=64):
        from chestlens.models.study import STUDY_FEATURES

        return torch.rand(n, len(STUDY_FEATURES)) * 3.0

    def run(self, model, images):
        with torch.no_grad():
            return model(images).softmax(1)

    def test_numpy_runner_matches_pytorch(self, tmp_path):
        from chestlens.models.study import StudyRunner, _read_safetensors

        spec, model = make_tiny(self.variant or self.kind)
        folder = save_bundle(spec, model.state_dict(), tmp_path / "b")
        features = self.inputs(4)
        runner = StudyRunner.load(folder)
        expected = self.run(model, features).numpy()
        np.testing.assert_allclose(runner.probabilities(features.numpy()), expected, atol=1e-6)
        # the reader used without the safetensors package gives the same tensors
        for name, value in _read_safetensors(folder / "weights.safetensors").items():
            np.testing.assert_array_equal(value, runner.tensors[name])

    def test_a_bundle_of_another_kind_is_refused(self, tmp_path):
        from chestlens.models.study import StudyRunner

        spec, model = make_tiny("classifier")
        folder = save_bundle(spec, model.state_dict(), tmp_path / "c")
        with pytest.raises(ChestlensInputError, match="needs a study bundle, got a classifier"):
            StudyRunner.load(folder)
