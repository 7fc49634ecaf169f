"""``Screener``: one call from an image (file, bytes, DICOM series) to an explained, measured result.

The screener is orchestration only; the work is done by the stages of :mod:`chestlens.pipeline.stages`,
in this order, over batches of inputs:

1. read (:func:`chestlens.io.read_image`: DICOM, PNG/JPEG, NIfTI, series folders), in threads ahead;
2. gate, part one (:mod:`chestlens.pipeline.gate`): DICOM tags and pixel checks;
3. prepare: radiographs are downsampled once to the working image that every model reads;
4. lungs: the lung segmenter for radiographs (its lung-field check completes the gate), the HU rule
   for CT;
5. classify + explain: calibrated probabilities, decisions at the bundle's operating points and the
   class-activation map of the top class, by modality (X-ray; CT slice or series);
6. lesions: lesion segmentation when a lesion bundle is loaded and its ``run_if_positive`` gate opens;
   for a CT series also the lesion features (burden, ground-glass share, distribution);
7. study: a CT series classified as a whole from those features, when a study bundle is loaded;
8. result: the gate verdict and a :class:`~chestlens.pipeline.schema.ScreeningResult` (research use
   only, never a diagnosis).

Every model is a bundle run through its graph (:mod:`chestlens.runtime`): ONNX Runtime by default, no
PyTorch needed; ``runtime="torch"`` runs the same graph in PyTorch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from chestlens.errors import ChestlensInputError
from chestlens.explain import HEATMAP_METHODS, HeatmapMethod
from chestlens.models.catalog import DEFAULT_CLASSIFIER, DEFAULT_LUNGS, bundled_lesion_segmenters
from chestlens.models.kinds import ROLES, role_of
from chestlens.models.spec import read_spec
from chestlens.models.study import StudyRunner
from chestlens.pipeline import stages
from chestlens.pipeline.case import Case, Screening, Source, read_case, read_timed
from chestlens.pipeline.readahead import read_ahead
from chestlens.pipeline.schema import FailedInput
from chestlens.preprocess.lung_roi import needs_lungs
from chestlens.runtime import RUNTIMES, GraphRunner, Runtime, load_graph

__all__ = ["Screener", "Screening", "Source"]

#: The working image is this many times the largest radiograph model input (e.g. 2 x 256 = 512 px).
WORKING_IMAGE_FACTOR = 2


def _modality(task: str) -> str:
    """``ct`` for CT tasks (``ct3``, ``lesions-ct``), else ``xray``."""
    return "ct" if task == "ct" or task.startswith("ct") or task.endswith("-ct") else "xray"


class Screener:
    """Loads the models once and screens images; see the module docstring for the stages.

    Args:
        classifier: classifier bundle (name or folder) for radiographs (task ``xray*``) or CT (``ct*``);
            None to skip classification.
        lungs: lung-field segmenter for radiographs (also the gate's image check); None skips lungs and
            the lung-field gate check.
        lesions: lesion segmenter bundles (X-ray and/or CT), run when their ``run_if_positive`` gate opens;
            default (None): every shipped lesion segmenter
            (:func:`chestlens.models.catalog.bundled_lesion_segmenters`).
        runtime: ``onnx`` (ONNX Runtime, default; no PyTorch needed) or ``torch``.
        device: PyTorch runtime only: ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
        cam: heatmap of the top class: ``cam`` (class-activation map, default), ``gradcam``,
            ``gradcam++`` or ``hirescam`` (PyTorch runtime only), or None for no heatmap.
        read_workers: threads decoding images ahead of the models in :meth:`iter_screen`.
        threads: ONNX Runtime intra-op threads per model (0: one per CPU core).
        compile: PyTorch runtime only: run the graphs through ``torch.compile`` (the first batch pays
            the compile time; results equal eager within 1e-4).
        progress: ``progress(stage, done, total)`` as the slices of a CT series go through the lungs,
            classify and lesions stages (:data:`~chestlens.pipeline.stages.SliceProgress`); default
            None: silent.
        study: a study bundle (:mod:`chestlens.models.study`) classifying CT series from their lesion
            features, run with numpy; it needs a CT lesion segmenter among ``lesions``. None: no study.
    """

    def __init__(
        self,
        classifier: str | None = DEFAULT_CLASSIFIER,
        lungs: str | None = DEFAULT_LUNGS,
        lesions: Sequence[str] | None = None,
        *,
        runtime: Runtime = "onnx",
        device: str = "auto",
        cam: HeatmapMethod | None = "cam",
        read_workers: int = 2,
        threads: int = 0,
        compile: bool = False,
        progress: stages.SliceProgress | None = None,
        study: str | None = None,
    ) -> None:
        _check_options(runtime, device, cam, compile)
        self.runtime: Runtime = runtime
        self.read_workers = read_workers

        def load(name: str, kind: str) -> GraphRunner:
            graph = load_graph(name, kind, runtime=runtime, device=device, threads=threads)
            return graph.compiled() if compile else graph  # type: ignore[attr-defined]

        classifiers = {} if classifier is None else {_modality(read_spec(classifier).task): classifier}
        self.classifiers = {m: load(n, "classifier") for m, n in classifiers.items()}
        self.lungs = None if lungs is None else load(lungs, "segmenter")
        for model in self.classifiers.values():
            if needs_lungs(model.spec.preprocess) and self.lungs is None:
                raise ChestlensInputError(
                    None, f"classifier {model.spec.name} reads the lung fields: it needs a lung segmenter"
                )
        names = bundled_lesion_segmenters() if lesions is None else lesions
        self.lesions = {_modality(read_spec(n).task): load(n, "segmenter") for n in names}
        radiograph_models = [self.lungs, self.classifiers.get("xray"), self.lesions.get("xray")]
        sizes = [m.spec.preprocess.input_size for m in radiograph_models if m is not None]
        self.working_side = WORKING_IMAGE_FACTOR * max(sizes, default=256)
        self.find_lungs = stages.FindLungs(self.lungs, progress)
        self.classify = stages.Classify(self.classifiers, cam, progress)
        self.segment_lesions = stages.SegmentLesions(self.lesions, progress)
        self.study = None if study is None else StudyRunner.load(study)
        if self.study is not None and "ct" not in self.lesions:
            raise ChestlensInputError(
                study, "a study bundle reads CT lesion features: it needs a CT lesion segmenter in --models"
            )
        self.classify_study = stages.ClassifyStudy(self.study, self.lesions)

    @classmethod
    def from_models(cls, names: Sequence[str], **kwargs: object) -> Screener:
        """A screener from a list of bundles of any kind (the CLI's ``--models``), sorted by kind."""
        roles = {name: role_of(read_spec(name)) for name in names}
        if unused := [name for name, role in roles.items() if role is None]:
            raise ChestlensInputError(unused[0], "screening does not use this kind of bundle")
        classifiers, lungs, lesions, study = ([n for n, r in roles.items() if r == role] for role in ROLES)
        if len(classifiers) > 1 or len(lungs) > 1 or len(study) > 1:
            raise ChestlensInputError(
                None, "--models takes at most one classifier, one lung segmenter and one study bundle"
            )
        return cls(
            classifier=classifiers[0] if classifiers else None,
            lungs=lungs[0] if lungs else None,
            lesions=lesions,
            study=study[0] if study else None,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def models(self) -> list[GraphRunner | StudyRunner]:
        """Every loaded model (each has ``spec`` and ``path``); the study bundle, if any, last."""
        lungs = [self.lungs] if self.lungs is not None else []
        study = [self.study] if self.study is not None else []
        return [*self.classifiers.values(), *lungs, *self.lesions.values(), *study]

    def screen(self, source: Source, *, name: str | None = None) -> Screening:
        """Screen one image; unreadable input raises :class:`~chestlens.errors.ChestlensInputError`."""
        return self._screen_cases([read_case(source, name)])[0]

    def iter_screen(
        self, sources: Iterable[Source], *, batch_size: int = 8
    ) -> Iterator[Screening | FailedInput]:
        """Screen many inputs, in order: decoding runs in threads ahead of batched model stages.

        Unreadable inputs come back as :class:`FailedInput` (reported and skipped, never fatal).
        """
        workers = max(1, self.read_workers)
        with ThreadPoolExecutor(workers) as pool:
            pending: list[Case | FailedInput] = []
            # two batches decoded ahead keep the models busy; a bounded read-ahead keeps memory flat
            for decoded in read_ahead(pool, read_timed, sources, ahead=2 * batch_size + workers):
                pending.append(decoded)
                if len(pending) == batch_size:
                    yield from self._screen_pending(pending)
                    pending = []
            yield from self._screen_pending(pending)

    def _screen_pending(self, pending: list[Case | FailedInput]) -> Iterator[Screening | FailedInput]:
        screened = iter(self._screen_cases([p for p in pending if isinstance(p, Case)]))
        for item in pending:
            yield item if isinstance(item, FailedInput) else next(screened)

    def _screen_cases(self, cases: list[Case]) -> list[Screening]:
        stages.check_inputs(cases)
        accepted = [c for c in cases if not c.rejected]
        stages.prepare([c for c in accepted if not c.is_ct], self.working_side)
        self.find_lungs(accepted)
        accepted = [c for c in accepted if not c.rejected]
        self.classify(accepted)
        self.segment_lesions(accepted)
        self.classify_study(accepted)
        return [
            stages.finish(c, self.segment_lesions.labels(c), self.runtime, self.classify_study.result(c))
            for c in cases
        ]


def _check_options(runtime: str, device: str, cam: str | None, compile: bool) -> None:
    """One-line errors for option combinations a runtime cannot honour."""
    if runtime not in RUNTIMES:
        raise ChestlensInputError(None, f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if cam is not None and cam not in HEATMAP_METHODS:
        raise ChestlensInputError(None, f"unknown heatmap {cam!r}: use one of {', '.join(HEATMAP_METHODS)}")
    if runtime == "onnx":
        if cam not in (None, "cam"):
            raise ChestlensInputError(None, f"--cam {cam} needs --runtime torch (ONNX graphs give --cam cam)")
        if compile:
            raise ChestlensInputError(None, "--compile needs --runtime torch")
        if device not in ("auto", "cpu"):
            raise ChestlensInputError(
                None, f"--device {device} needs --runtime torch (ONNX Runtime runs on the CPU)"
            )
