"""``chestlens listen`` against pynetdicom peers on 127.0.0.1: real RG1_UNCR.dcm and CT_small.dcm in,
the SR and SEG out to a receiving SCP, through the durable outbox."""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from dicomnet_helpers import Receiver, associate, free_port, send, sr_probabilities, wait_for
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, generate_uid
from typer.testing import CliRunner

from chestlens.cli import app
from chestlens.dicomnet.outbox import Outbox
from chestlens.dicomnet.scp import CANNOT_UNDERSTAND
from chestlens.dicomnet.settings import Destination

RESULT_TIMEOUT_S = 180


def _events(listener, name: str) -> list[dict]:
    return [entry for entry in listener.audit.entries() if entry["event"] == name]


@pytest.fixture
def receiver():
    peer = Receiver()
    yield peer
    peer.stop()


@pytest.mark.slow
def test_radiograph_sr_and_seg_come_back_with_the_screeners_probabilities(
    start_listener, receiver, screener, pip_dicom, tmp_path
):
    path = pip_dicom("RG1_UNCR.dcm")
    source = pydicom.dcmread(path)
    listener = start_listener(tmp_path, (Destination("PACS", "127.0.0.1", receiver.port),))

    assert associate(listener.port).send_c_echo().Status == 0x0000
    assert send(listener.port, source) == 0x0000
    wait_for(lambda: receiver.modalities() == ["SEG", "SR"], RESULT_TIMEOUT_S, "the SR and SEG")

    (sr,) = receiver.by_modality("SR")
    (seg,) = receiver.by_modality("SEG")
    expected = screener.screen(path).result.classification.probabilities
    assert sr_probabilities(sr) == pytest.approx(expected, abs=1e-6)
    for result in (sr, seg):
        assert result.StudyInstanceUID == source.StudyInstanceUID
        assert result.SeriesInstanceUID != source.SeriesInstanceUID
    assert (
        sr.CurrentRequestedProcedureEvidenceSequence[0]
        .ReferencedSeriesSequence[0]
        .ReferencedSOPSequence[0]
        .ReferencedSOPInstanceUID
        == source.SOPInstanceUID
    )
    assert {item.status for item in Outbox(tmp_path).items()} == {"delivered"}


def test_audit_log_and_files_hold_no_patient_identity(start_listener, pip_dicom, tmp_path):
    source = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))
    source.PatientID, source.PatientName, source.AccessionNumber = "PID-4711", "Doe^Jane", "ACC-0815"
    listener = start_listener(tmp_path)
    assert send(listener.port, source) == 0x0000
    wait_for(lambda: _events(listener, "screened"), RESULT_TIMEOUT_S, "screening")

    text = listener.audit.path.read_text()
    names = " ".join(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    for identity in ("PID-4711", "Doe", "ACC-0815", source.StudyInstanceUID, source.SOPInstanceUID):
        assert identity not in text and identity not in names
    (received,) = _events(listener, "received")
    assert received["calling_ae"] == "MODALITY" and len(received["patient_key"]) == 16


def test_calling_ae_title_not_on_the_allow_list_is_refused(start_listener, tmp_path):
    listener = start_listener(tmp_path, allowed_callers=("MODALITY",))

    intruder = associate(listener.port, calling="INTRUDER")
    assert intruder.is_rejected
    allowed = associate(listener.port, calling="MODALITY")
    assert allowed.is_established
    assert allowed.send_c_echo().Status == 0x0000
    allowed.release()
    (rejected,) = _events(listener, "association_rejected")
    assert (rejected["calling_ae"], rejected["reason"]) == ("INTRUDER", "calling AE title not allowed")


def test_one_association_over_the_limit_is_rejected_with_its_reason_and_a_retry_gets_in(
    start_listener, tmp_path
):
    listener = start_listener(tmp_path, max_associations=2)
    held = [associate(listener.port) for _ in range(2)]
    assert all(assoc.is_established for assoc in held)

    third = associate(listener.port)

    assert third.is_rejected
    (rejected,) = _events(listener, "association_rejected")
    assert rejected["reason"] == "too many associations at once (limit 2)"
    held.pop().release()
    wait_for(lambda: len(listener.ae.active_associations) < 2, 10, "a released association")
    retry = associate(listener.port)
    assert retry.is_established and retry.send_c_echo().Status == 0x0000
    for assoc in (retry, *held):
        assoc.release()


def test_finished_outbox_items_leave_the_folder_the_delivery_loop_reads(tmp_path):
    outbox = Outbox(tmp_path)
    first, second = (
        outbox.add(
            tmp_path / f"{n}.dcm",
            sop_instance_uid=f"1.2.{n}",
            kind="SR",
            destination="PACS@h:1",
            instance_key=None,
            study_key=None,
        )
        for n in (1, 2)
    )
    outbox.delivered(first)
    outbox.attempt_failed(second, "refused", retry_in=None)
    assert outbox.due() == [] and sorted(p.name for p in outbox.folder.glob("*.json")) == []
    assert {item.status for item in Outbox(tmp_path).items()} == {"delivered", "failed"}
    assert (
        outbox.add(
            tmp_path / "1.dcm",
            sop_instance_uid="1.2.1",
            kind="SR",
            destination="PACS@h:1",
            instance_key=None,
            study_key=None,
        ).status
        == "delivered"
    )  # queued once, ever

    (outbox.done_folder / f"{first.id}.json").replace(outbox.folder / f"{first.id}.json")  # older layout
    assert [item.id for item in Outbox(tmp_path).items() if item.status == "delivered"] == [first.id]
    assert not list(outbox.folder.glob("*.json"))  # moved to done/ when the outbox was opened


def test_a_structured_report_is_accepted_and_ignored(start_listener, receiver, tmp_path):
    listener = start_listener(tmp_path, (Destination("PACS", "127.0.0.1", receiver.port),))
    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID, sr.SOPInstanceUID = ComprehensiveSRStorage, generate_uid()
    sr.StudyInstanceUID, sr.SeriesInstanceUID = generate_uid(), generate_uid()
    sr.Modality, sr.PatientID = "SR", "PID-1"

    assert send(listener.port, sr) == 0x0000
    (ignored,) = _events(listener, "ignored")
    assert ignored["sop_class"] == "Comprehensive SR Storage"
    assert not _events(listener, "received") and Outbox(tmp_path).items() == []


@pytest.mark.slow
def test_malformed_image_is_refused_and_the_listener_keeps_serving(
    start_listener, receiver, pip_dicom, tmp_path
):
    listener = start_listener(tmp_path, (Destination("PACS", "127.0.0.1", receiver.port),))
    broken = copy.deepcopy(pydicom.dcmread(pip_dicom("RG1_UNCR.dcm")))
    broken.SOPInstanceUID = generate_uid()
    broken.PixelData = broken.PixelData[:100]  # far fewer bytes than Rows x Columns

    status = send(listener.port, broken)
    assert status == CANNOT_UNDERSTAND and 0xC000 <= status <= 0xCFFF  # a DICOM failure status
    (refused,) = _events(listener, "refused")
    assert "pixel data" in refused["reason"]

    ct = pydicom.dcmread(pip_dicom("CT_small.dcm"))  # next: a CT slice, screened once its series settles
    assert send(listener.port, ct) == 0x0000
    wait_for(lambda: receiver.modalities() == ["SEG", "SR"], RESULT_TIMEOUT_S, "the CT slice's SR and SEG")
    assert receiver.by_modality("SR")[0].StudyInstanceUID == ct.StudyInstanceUID


@pytest.mark.slow
def test_results_wait_for_a_down_destination_and_arrive_once_after_restart(
    start_listener, pip_dicom, tmp_path
):
    port = free_port()
    destination = (Destination("PACS", "127.0.0.1", port),)
    first = start_listener(tmp_path, destination)
    assert send(first.port, pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))) == 0x0000

    def failed_twice() -> bool:
        items = Outbox(tmp_path).items()
        return len(items) == 2 and all(item.attempts >= 2 and item.status == "pending" for item in items)

    wait_for(failed_twice, RESULT_TIMEOUT_S, "two failed attempts per result")
    first.stop()
    status = CliRunner().invoke(app, ["listen", "--status", "--state-dir", str(tmp_path)])
    assert status.exit_code == 0 and "pending=2 delivered=0 failed=0" in status.output
    assert "no association with PACS@127.0.0.1" in status.output

    pacs = Receiver(port=port)  # the destination comes up, then chestlens restarts
    try:
        start_listener(tmp_path, destination)
        wait_for(lambda: pacs.modalities() == ["SEG", "SR"], 30, "delivery after restart")
        wait_for(lambda: {i.status for i in Outbox(tmp_path).items()} == {"delivered"}, 10, "delivered marks")
        uids = [ds.SOPInstanceUID for ds in pacs.received]
        assert len(uids) == len(set(uids)) == 2
    finally:
        pacs.stop()
    status = CliRunner().invoke(app, ["listen", "--status", "--state-dir", str(tmp_path)])
    assert "pending=0 delivered=2 failed=0" in status.output


@pytest.mark.slow
@pytest.mark.shared_data
def test_a_ct_series_is_screened_once_after_it_settles(
    start_listener, receiver, screener, source_dir, tmp_path
):
    folder = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    slices = sorted(
        (pydicom.dcmread(path) for path in folder.glob("*.dcm")), key=lambda ds: ds.InstanceNumber
    )
    slices = slices[50:90]  # 40 contiguous slices of P001 keep the two screenings short
    listener = start_listener(
        tmp_path / "state", (Destination("PACS", "127.0.0.1", receiver.port),), settle_s=2.0
    )
    assoc = associate(listener.port, datasets=slices)
    assert [int(assoc.send_c_store(ds).Status) for ds in slices] == [0x0000] * len(slices)
    assoc.release()

    wait_for(lambda: receiver.modalities() == ["SEG", "SR"], RESULT_TIMEOUT_S, "the series' SR and SEG")
    (screened,) = _events(listener, "screened")
    assert screened["files"] == len(slices)
    subset = tmp_path / "subset"
    subset.mkdir()
    for ds in slices:
        shutil.copyfile(ds.filename, subset / Path(ds.filename).name)  # the series reader skips links
    expected = screener.screen(subset).result.lungs.volume_ml
    report = hd.sr.ComprehensiveSR.from_dataset(receiver.by_modality("SR")[0]).content
    (lungs,) = report.get_image_measurement_groups(finding_type=codes.SCT.Lung)
    (volume,) = lungs.get_measurements(name=codes.SCT.Volume)
    assert float(volume.value) == pytest.approx(expected, rel=1e-6)
    assert receiver.by_modality("SR")[0].StudyInstanceUID == slices[0].StudyInstanceUID


def test_images_received_but_not_screened_are_screened_at_the_next_start(
    start_listener, receiver, pip_dicom, tmp_path
):
    unscreened = tmp_path / "incoming" / "series0" / "instance0.dcm"  # as left by a crash after receipt
    unscreened.parent.mkdir(parents=True)
    shutil.copyfile(pip_dicom("RG1_UNCR.dcm"), unscreened)

    listener = start_listener(tmp_path, (Destination("PACS", "127.0.0.1", receiver.port),))

    wait_for(lambda: receiver.modalities() == ["SEG", "SR"], RESULT_TIMEOUT_S, "the SR and SEG")
    assert _events(listener, "recovered")[0]["files"] == 1
    assert not unscreened.exists() and not unscreened.parent.exists()  # screened inputs are removed


@pytest.mark.slow
def test_an_image_sent_twice_gets_two_results_each_delivered_once(start_listener, pip_dicom, tmp_path):
    port = free_port()  # the destination is down while both results wait in the outbox
    listener = start_listener(tmp_path, (Destination("PACS", "127.0.0.1", port),))
    source = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))
    assert send(listener.port, source) == 0x0000
    wait_for(lambda: _events(listener, "screened"), RESULT_TIMEOUT_S, "the first screening")
    assert send(listener.port, source) == 0x0000
    wait_for(lambda: len(Outbox(tmp_path).items()) == 4, RESULT_TIMEOUT_S, "two results per screening")

    pacs = Receiver(port=port)
    try:
        wait_for(lambda: len(pacs.received) == 4, 30, "delivery of the four results")
        time.sleep(1.0)
        uids = [ds.SOPInstanceUID for ds in pacs.received]
        assert len(uids) == len(set(uids)) == 4 and pacs.modalities() == ["SEG", "SEG", "SR", "SR"]
    finally:
        pacs.stop()


@pytest.mark.slow
def test_results_go_to_every_destination(start_listener, pip_dicom, tmp_path):
    """Two PACS configured: each gets its own SR and SEG of the study, delivered once each."""
    first, second = Receiver(), Receiver()
    try:
        destinations = (
            Destination("PACS_A", "127.0.0.1", first.port),
            Destination("PACS_B", "127.0.0.1", second.port),
        )
        listener = start_listener(tmp_path, destinations)
        source = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"))
        assert send(listener.port, source) == 0x0000
        for peer in (first, second):
            wait_for(lambda peer=peer: peer.modalities() == ["SEG", "SR"], RESULT_TIMEOUT_S, "the SR and SEG")
        sent = [(peer.by_modality("SR")[0], peer.by_modality("SEG")[0]) for peer in (first, second)]
        assert sent[0][0].SOPInstanceUID == sent[1][0].SOPInstanceUID  # the same SR, twice delivered
        assert all(item.StudyInstanceUID == source.StudyInstanceUID for pair in sent for item in pair)
        # the outbox marks an item delivered after the peer has answered: wait for the marks
        wait_for(lambda: {i.status for i in Outbox(tmp_path).items()} == {"delivered"}, 10, "delivered marks")
        assert len(Outbox(tmp_path).items()) == 4
    finally:
        first.stop()
        second.stop()


def _ct_series(pip_dicom, count: int, images_in_acquisition: int | None) -> list[Dataset]:
    """``count`` slices of one series made from CT_small.dcm (positions 5 mm apart)."""
    series_uid, slices = generate_uid(), []
    for number in range(count):
        ds = pydicom.dcmread(pip_dicom("CT_small.dcm"))
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = series_uid, generate_uid(), number + 1
        ds.ImagePositionPatient = [*list(ds.ImagePositionPatient)[:2], float(number * 5)]
        if images_in_acquisition is not None:
            ds.ImagesInAcquisition = images_in_acquisition
        slices.append(ds)
    return slices


@pytest.mark.slow
def test_a_ct_series_complete_by_count_is_screened_without_waiting_to_settle(
    start_listener, receiver, pip_dicom, tmp_path
):
    """Slices that say how many they are (Images in Acquisition) are screened once all have come; a
    series that does not say waits for the settle time (here far longer than the test)."""
    listener = start_listener(tmp_path, (Destination("PACS", "127.0.0.1", receiver.port),), settle_s=600.0)
    counted, silent = _ct_series(pip_dicom, 3, 3), _ct_series(pip_dicom, 3, None)
    assoc = associate(listener.port, datasets=counted)
    assert [int(assoc.send_c_store(ds).Status) for ds in [*silent, *counted]] == [0x0000] * 6
    assoc.release()

    wait_for(lambda: receiver.modalities() == ["SEG", "SR"], RESULT_TIMEOUT_S, "the counted series' results")
    (screened,) = _events(listener, "screened")
    assert screened["files"] == 3
    (sr,) = receiver.by_modality("SR")
    assert sr.SeriesInstanceUID != counted[0].SeriesInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == counted[0].SeriesInstanceUID
    assert listener.worker.pending() == 1  # the silent series still settles
