"""Progress of a CT series: the screener reports its slices stage by stage, the CLI draws it unless -q.

The series (``ct_small_series``) has more slices than one graph batch
(:data:`~chestlens.pipeline.stages.MAX_GRAPH_BATCH`), so batched stages report more than once.
"""

from __future__ import annotations

import numpy as np
import pytest

from chestlens.cli import main
from chestlens.pipeline.screener import Screener
from chestlens.pipeline.stages import MAX_GRAPH_BATCH, run_batched

N_SLICES = 10  # the slices of the ct_small_series fixture (conftest)


class Recorder:
    """A progress callback that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.calls.append((stage, done, total))

    def of(self, stage: str) -> list[tuple[int, int]]:
        return [(done, total) for name, done, total in self.calls if name == stage]


class CountingGraph:
    """A stand-in graph: ones, one output row per input row."""

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"probabilities": np.ones((len(next(iter(feeds.values()))), 2), np.float32)}


def test_run_batched_reports_each_batch():
    feeds = [{"x": np.zeros((1, 4), np.float32)} for _ in range(2 * MAX_GRAPH_BATCH + 3)]
    sizes: list[int] = []
    outputs = run_batched(CountingGraph(), feeds, sizes.append)  # type: ignore[arg-type]
    assert len(outputs) == len(feeds)
    assert sizes == [MAX_GRAPH_BATCH, MAX_GRAPH_BATCH, 3]


@pytest.mark.inference
def test_lungs_report_every_slice_and_lesions_every_batch(ct_small_series, capsys):
    progress = Recorder()
    screener = Screener(classifier=None, lungs=None, lesions=["lesions-ct-segmenter"], progress=progress)
    result = screener.screen(ct_small_series).result
    assert result.input.n_slices == N_SLICES and result.lesions is not None and result.lesions.ran
    assert progress.of("lungs") == [(k, N_SLICES) for k in range(1, N_SLICES + 1)]
    assert progress.of("lesions") == [(MAX_GRAPH_BATCH, N_SLICES), (N_SLICES, N_SLICES)]
    assert {stage for stage, _, _ in progress.calls} == {"lungs", "lesions"}

    silent = Screener(classifier=None, lungs=None, lesions=["lesions-ct-segmenter"])  # the default
    capsys.readouterr()
    silent.screen(ct_small_series)
    assert capsys.readouterr() == ("", "")


def test_a_ct_classifier_reports_its_slices(ct_small_series, tiny_classifier_bundle):
    bundle = tiny_classifier_bundle(task="ct3", labels=["COVID-19", "CAP", "normal"])
    progress = Recorder()
    screener = Screener(
        classifier=str(bundle), lungs=None, lesions=[], runtime="torch", device="cpu", progress=progress
    )
    classification = screener.screen(ct_small_series).result.classification
    chosen = len(classification.slice_indices)
    assert progress.of("classify")[-1] == (chosen, chosen)
    assert len(progress.of("classify")) == -(-chosen // MAX_GRAPH_BATCH)  # one call per graph batch


@pytest.mark.inference
def test_a_single_image_reports_nothing(pip_dicom):
    progress = Recorder()
    Screener(classifier=None, lungs=None, lesions=["lesions-ct-segmenter"], progress=progress).screen(
        pip_dicom("CT_small.dcm")
    )
    assert progress.calls == []


@pytest.mark.inference
@pytest.mark.parametrize("command", ["predict", "evaluate-series"])
def test_the_cli_draws_slice_progress_unless_quiet(command, ct_small_series, tmp_path, capsys):
    args = [command, str(ct_small_series)]
    if command == "predict":
        args += ["--models", "lesions-ct-segmenter", "--cam", "none"]
    with pytest.raises(SystemExit) as exited:
        main([*args, "--out", str(tmp_path / "out")])
    assert exited.value.code in (0, None)
    stderr = capsys.readouterr().err
    assert "CT series: lungs" in stderr and "CT series: lesions" in stderr and f"/{N_SLICES} " in stderr

    with pytest.raises(SystemExit) as exited:
        main([*args, "--out", str(tmp_path / "quiet"), "-q"])
    assert exited.value.code in (0, None)
    assert capsys.readouterr() == ("", "")
