"""What ``chestlens listen`` returns: with ``secondary_capture`` the SR, the SEG and the overlay as a DICOM
Secondary Capture (OT) come back to a pynetdicom peer, for a radiograph (RG1_UNCR.dcm) and for a CT series
(COVID-CT-MD P001, shared data), whose SEG covers every received slice; ``--secondary-capture`` reaches
the listener's settings."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from dicomnet_helpers import Receiver, associate, send, wait_for
from typer.testing import CliRunner

from chestlens.cli import app
from chestlens.dicomnet.outbox import Outbox
from chestlens.dicomnet.settings import Destination
from chestlens.pipeline.dicom_sc import SC_SERIES_NUMBER, representative_slice

RESULT_TIMEOUT_S = 180
IDENTITY = {"PatientID": "PID-4711", "PatientName": "Doe^Jane", "AccessionNumber": "ACC-0815"}


@pytest.fixture
def receiver():
    peer = Receiver()
    yield peer
    peer.stop()


def _delivered(state_dir: Path, count: int) -> bool:
    items = Outbox(state_dir).items()
    return len(items) == count and {item.status for item in items} == {"delivered"}


@pytest.mark.slow
def test_radiograph_with_secondary_capture_returns_sr_seg_and_sc(
    start_listener, receiver, pip_dicom, tmp_path, caplog
):
    source = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))
    for keyword, value in IDENTITY.items():
        setattr(source, keyword, value)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="pynetdicom")  # as `chestlens listen` sets it: UIDs at INFO
    listener = start_listener(
        tmp_path, (Destination("PACS", "127.0.0.1", receiver.port),), secondary_capture=True
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert send(listener.port, source) == 0x0000
        wait_for(lambda: receiver.modalities() == ["OT", "SEG", "SR"], RESULT_TIMEOUT_S, "SR, SEG and SC")
        wait_for(lambda: _delivered(tmp_path, 3), 10, "the outbox's delivered marks")

    (sr,) = receiver.by_modality("SR")
    (seg,) = receiver.by_modality("SEG")
    (sc,) = receiver.by_modality("OT")
    assert sc.StudyInstanceUID == source.StudyInstanceUID
    assert (
        len({source.SeriesInstanceUID, sr.SeriesInstanceUID, seg.SeriesInstanceUID, sc.SeriesInstanceUID})
        == 4
    )
    assert sc.SeriesNumber == SC_SERIES_NUMBER and "research use only" in sc.SeriesDescription
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert sc.pixel_array.shape == (sc.Rows, sc.Columns, 3)
    assert {keyword: str(sc.get(keyword)) for keyword in IDENTITY} == IDENTITY  # filed with the patient
    said = caplog.text + listener.audit.path.read_text() + "\n".join(str(w.message) for w in caught)
    names = " ".join(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))
    for value in (*IDENTITY.values(), "Doe", "Jane"):
        assert value not in said and value not in names


@pytest.mark.slow
@pytest.mark.shared_data
def test_ct_series_returns_one_seg_over_every_slice_and_an_sc_of_one_slice(
    start_listener, receiver, screener, source_dir, tmp_path
):
    folder = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    slices = sorted((pydicom.dcmread(p) for p in folder.glob("*.dcm")), key=lambda ds: ds.InstanceNumber)
    slices = slices[50:90]  # 40 contiguous slices of P001 keep the screenings short
    listener = start_listener(
        tmp_path / "state",
        (Destination("PACS", "127.0.0.1", receiver.port),),
        settle_s=2.0,
        secondary_capture=True,
    )
    assoc = associate(listener.port, datasets=slices)
    assert [int(assoc.send_c_store(ds).Status) for ds in slices] == [0x0000] * len(slices)
    assoc.release()
    wait_for(lambda: receiver.modalities() == ["OT", "SEG", "SR"], RESULT_TIMEOUT_S, "the series' results")

    by_z = sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))  # axial: inferior first
    positions = {str(ds.SOPInstanceUID): [float(v) for v in ds.ImagePositionPatient] for ds in slices}
    (sr,) = receiver.by_modality("SR")
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == by_z[0].SOPInstanceUID
    seg = hd.seg.Segmentation.from_dataset(receiver.by_modality("SEG")[0])
    assert seg.StudyInstanceUID == slices[0].StudyInstanceUID
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert sorted(item.ReferencedSOPInstanceUID for item in referenced) == sorted(positions)
    assert seg.NumberOfFrames >= len(slices)  # a lung frame on each of these slices, plus lesion frames
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient] == positions[uid]
    subset = tmp_path / "subset"
    subset.mkdir()
    for ds in slices:
        shutil.copyfile(ds.filename, subset / Path(ds.filename).name)  # the series reader skips links
    index, _ = representative_slice(screener.screen(subset))
    (sc,) = receiver.by_modality("OT")
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == by_z[index].SOPInstanceUID


class _FakeListener:
    """Stands in for :class:`chestlens.dicomnet.scp.Listener`: keeps the settings, returns at once."""

    settings = None
    port = 0

    def __init__(self, settings, _screener) -> None:
        type(self).settings = settings

    def start(self) -> None:
        pass

    def wait(self) -> None:
        pass


@pytest.mark.parametrize(("flag", "expected"), [([], False), (["--secondary-capture"], True)])
def test_secondary_capture_option_reaches_the_listener_settings(monkeypatch, tmp_path, flag, expected):
    monkeypatch.setattr("chestlens.dicomnet.scp.Listener", _FakeListener)
    monkeypatch.setattr("chestlens.pipeline.screener.Screener", lambda **_: None)
    monkeypatch.setattr("signal.signal", lambda *_: None)  # the pytest process keeps its handlers

    result = CliRunner().invoke(app, ["listen", "--state-dir", str(tmp_path), "--port", "0", *flag])

    assert result.exit_code == 0, result.output
    assert _FakeListener.settings.secondary_capture is expected
