"""One default model set for every entry point: ``serve`` loads what ``predict`` and ``demo`` load."""

from __future__ import annotations

import pytest
from serve_helpers import serving

from chestlens.cli import main
from chestlens.cli.demo_cmd import DEMO_SAMPLES, run_demo
from chestlens.models.catalog import bundled_lesion_segmenters, default_models
from chestlens.pipeline.screener import Screener
from chestlens.serve.settings import ServeSettings

pytestmark = pytest.mark.inference


def _names(screener: Screener) -> set[str]:
    return {model.spec.name for model in screener.models}


@pytest.fixture
def built(monkeypatch) -> list[Screener]:
    """Every :class:`Screener` constructed while the test runs."""
    screeners: list[Screener] = []
    original = Screener.__init__

    def recording(self: Screener, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        screeners.append(self)

    monkeypatch.setattr(Screener, "__init__", recording)
    return screeners


def test_the_default_set_has_a_lesion_model_for_ct():
    assert "lesions-ct-segmenter" in bundled_lesion_segmenters()
    assert set(bundled_lesion_segmenters()) <= set(default_models())
    assert ServeSettings().models == default_models()


def test_serve_loads_the_models_predict_and_demo_load(built, pip_dicom, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["predict", str(pip_dicom("CT_small.dcm")), "-q", "--cam", "none", "--device", "cpu"])
    assert caught.value.code == 0, capsys.readouterr().err
    run_demo(tmp_path / "demo", DEMO_SAMPLES[1:2], device="cpu")
    with serving(ServeSettings(data_dir=tmp_path / "serve", device="cpu")) as client:
        served = client.app.state.service.engine.screener
        assert served.lesions, "serve must run the CT lesion model by default"
    predict, demo = built[0], built[1]
    assert _names(served) == _names(predict) == _names(demo) == set(default_models())
