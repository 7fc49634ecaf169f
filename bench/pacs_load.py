"""Load check of ``chestlens listen`` with Orthanc: radiographs pushed in one association and in parallel.

    python bench/pacs_load.py [--images 200] [--parallel 8] [--orthanc-env] [--quick] [--json out.json]

``--images`` distinct real chest radiographs (Kermany JPEG and NIH PNG from ``$CHESTLENS_DATA``, alternating)
are made into DX DICOM instances in memory (8-bit MONOCHROME2, Digital X-Ray Image Storage - For
Presentation, PA, CHEST, no pixel spacing, a made-up patient, fresh study/series/instance UIDs per mode);
without the data they are copies of the pip-shipped RG1_UNCR.dcm with fresh UIDs, and the report says so.
They are stored in Orthanc by REST (``POST /instances``, not timed). ``chestlens listen`` then runs as a
user would run it (``python -m chestlens.cli listen --device cpu`` in a subprocess, a fresh state folder,
caller ORTHANC allowed, results back to Orthanc by C-STORE) and, once it answers C-ECHO, Orthanc is asked
to push the instances to its ``chestlens`` modality with asynchronous store jobs (``POST
/modalities/chestlens/store``), in two modes, each with its own listener process and fresh studies:

* one association: one job with every instance;
* parallel: ``--parallel`` jobs of about N / ``--parallel`` instances each, submitted at once.

Orthanc runs at most ``ConcurrentJobs`` jobs at a time. By default the script starts its own Orthanc
(the configuration of ``.ci/orthanc.sh`` plus ``"ConcurrentJobs": --parallel`` and a job history of 1000, in a
temporary folder).
``--orthanc-env`` uses the Orthanc named by ``CHESTLENS_ORTHANC_URL``, ``CHESTLENS_ORTHANC_DICOM`` and
``CHESTLENS_ORTHANC_LISTEN_PORT`` (``source .ci/orthanc.sh``, whose Orthanc keeps the default of 2).
The concurrency actually reached is measured either way: the most connections to the listener's port open
at once (its established TCP connections, sampled every 0.25 s with psutil; an association the listener
rejects counts while it is open, and is counted again as ``associations_rejected`` from the audit log) and
the most Orthanc jobs in state Running at once (polled every second).

Clock: every time is the listener's own wall clock. Sent = the audit log's ``received`` time of an image
(its C-STORE was read, checked and written to disk); SR stored = the outbox's ``delivered_at`` of the SR
of that study (Orthanc answered the C-STORE of the SR with success). Reported per mode: images/s (SRs
stored / (last SR stored - first image received)), latency from sent to SR stored (p50, p95, p99, max,
seconds), the SR and SEG instances per study found in Orthanc at the end (exactly one of each: none lost,
none duplicated; lost = studies without an SR or a SEG, less the images the quality gate refused;
duplicated = studies with more than one SR or SEG, plus images received more than once), outbox items
delivered / failed / pending, failed delivery attempts, refusals and rejected associations in the audit
log, and the listener's RSS (after loading the models, and the peak of the samples during the run).
``--quick``: 16 images (a smoke test, not a measurement). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification

from chestlens.dicomnet.outbox import Outbox, OutboxItem
from chestlens.export.browser import free_port

CALLING_AE = "ORTHANC"
LISTENER_AE = "CHESTLENS"
MODALITY = "chestlens"
READY_TIMEOUT_S = 300.0
ORTHANC_TIMEOUT_S = 30.0
SAMPLE_S = 0.25
POLL_S = 1.0
FINISHED = ("Success", "Failure", "Gone")
QUICK_IMAGES = 16
ENV_URL = "CHESTLENS_ORTHANC_URL"
ENV_DICOM = "CHESTLENS_ORTHANC_DICOM"
ENV_PORT = "CHESTLENS_ORTHANC_LISTEN_PORT"


# ---- radiographs -------------------------------------------------------------------------------------


def picture_files(count: int) -> list[Path]:
    """Up to ``count`` real chest radiographs under ``$CHESTLENS_DATA``: Kermany JPEG and NIH PNG alternating
    (empty without the data)."""
    from chestlens.data.root import data_root

    root = data_root()
    if root is None:
        return []
    kermany = sorted((root / "kermany-chest-xray").rglob("*.jpeg"))
    nih = sorted((root / "nih-chestxray14-darkcovidnet").rglob("*.png"))
    return [p for pair in zip(kermany, nih, strict=False) for p in pair][:count]


def dx_instance(pixels: np.ndarray, index: int) -> Dataset:
    """An 8-bit MONOCHROME2 DX For Presentation instance of ``pixels`` (rows x columns, uint8), chest PA,
    without pixel spacing, for made-up patient ``index``, with fresh study, series and instance UIDs."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    now = datetime.datetime.now()
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = f"LOADTEST^{index:04d}"
    ds.PatientID = f"LOADTEST-{index:04d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = "DX"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    return ds


def rg1_copy() -> Dataset:
    """RG1_UNCR.dcm (pip-shipped) with fresh study, series and instance UIDs."""
    from chestlens.io.samples import sample_path

    ds = pydicom.dcmread(sample_path("RG1_UNCR.dcm"))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def radiographs(files: list[Path], count: int) -> Iterator[bytes]:
    """``count`` DICOM files' bytes, made one at a time (fresh UIDs on every call): DX instances of
    ``files`` in turn, or RG1 copies when ``files`` is empty."""
    for index in range(count):
        if files:
            pixels = np.asarray(Image.open(files[index % len(files)]).convert("L"))
            dataset = dx_instance(pixels, index)
        else:
            dataset = rg1_copy()
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        yield buffer.getvalue()


# ---- Orthanc -----------------------------------------------------------------------------------------


@dataclass
class Orthanc:
    """An Orthanc reached by REST at ``url`` and by DICOM at ``dicom`` (``AE@HOST:PORT``), whose
    ``chestlens`` modality is 127.0.0.1:``listen_port``; ``folder`` and ``process`` when started here."""

    url: str
    dicom: str
    listen_port: int
    concurrent_jobs: int | None
    folder: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        # Orthanc closes idle keep-alive connections; a fresh connection per request avoids reusing one
        self.http = httpx.Client(base_url=self.url, timeout=120, headers={"Connection": "close"})

    @classmethod
    def from_env(cls) -> Orthanc:
        """The Orthanc of ``source .ci/orthanc.sh`` (its ``ConcurrentJobs`` is not known here)."""
        missing = [name for name in (ENV_URL, ENV_DICOM, ENV_PORT) if not os.environ.get(name)]
        if missing:
            raise SystemExit(f"--orthanc-env: {', '.join(missing)} unset (source .ci/orthanc.sh first)")
        return cls(os.environ[ENV_URL], os.environ[ENV_DICOM], int(os.environ[ENV_PORT]), None)

    @classmethod
    def start(cls, concurrent_jobs: int) -> Orthanc:
        """A private Orthanc on loopback: ``.ci/orthanc.sh``'s configuration with ``ConcurrentJobs``."""
        folder = Path(tempfile.mkdtemp(prefix="chestlens-bench-orthanc."))
        http_port, dicom_port, listen_port = free_port(), free_port(), free_port()
        config = {
            "Name": "chestlens-bench",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            "HttpServerEnabled": True,
            "HttpPort": http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": CALLING_AE,
            "DicomPort": dicom_port,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": {MODALITY: [LISTENER_AE, "127.0.0.1", listen_port]},
            "StableAge": 2,
            "SaveJobs": False,
            "JobsHistorySize": 1000,
            "ConcurrentJobs": concurrent_jobs,
        }
        (folder / "orthanc.json").write_text(json.dumps(config, indent=1))
        with (folder / "orthanc.log").open("wb") as log_file:
            process = subprocess.Popen(
                ["Orthanc", str(folder / "orthanc.json")], stdout=log_file, stderr=subprocess.STDOUT
            )
        orthanc = cls(
            f"http://127.0.0.1:{http_port}",
            f"{CALLING_AE}@127.0.0.1:{dicom_port}",
            listen_port,
            concurrent_jobs,
            folder,
            process,
        )
        deadline = time.monotonic() + ORTHANC_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                orthanc.http.get("/system").raise_for_status()
                return orthanc
            except httpx.HTTPError:
                time.sleep(0.2)
        log = (folder / "orthanc.log").read_text(errors="replace")[-2000:]
        orthanc.stop()
        raise SystemExit(f"Orthanc did not start within {ORTHANC_TIMEOUT_S:.0f} s:\n{log}")

    def version(self) -> str:
        """Orthanc's version (``GET /system``)."""
        return str(self.http.get("/system").json()["Version"])

    def store(self, datasets: Iterator[bytes]) -> tuple[list[str], list[str]]:
        """``POST /instances`` each file; returns (instance ids, study ids) in Orthanc."""
        instances, studies = [], []
        for data in datasets:
            answer = self.http.post("/instances", content=data)
            answer.raise_for_status()
            instances.append(answer.json()["ID"])
            studies.append(answer.json()["ParentStudy"])
        return instances, studies

    def push(self, chunks: list[list[str]]) -> list[str]:
        """One asynchronous store job to the ``chestlens`` modality per chunk; returns the job ids."""
        jobs = []
        for chunk in chunks:
            answer = self.http.post(
                f"/modalities/{MODALITY}/store", json={"Resources": chunk, "Synchronous": False}
            )
            answer.raise_for_status()
            jobs.append(answer.json()["ID"])
        return jobs

    def jobs(self, ids: list[str]) -> list[dict[str, Any]]:
        """Each job's description (``State``: Pending, Running, Success, Failure...); ``{"State": "Gone"}``
        for a job Orthanc no longer lists (finished and dropped from its history, ``JobsHistorySize``)."""
        found = []
        for job in ids:
            answer = self.http.get(f"/jobs/{job}")
            if answer.status_code == 404:
                found.append({"State": "Gone"})
            else:
                answer.raise_for_status()
                found.append(answer.json())
        return found

    def modalities_per_study(self, study: str) -> Counter[str]:
        """Number of instances of each modality in ``study``."""
        counts: Counter[str] = Counter()
        for series in self.http.get(f"/studies/{study}/series").json():
            counts[series["MainDicomTags"].get("Modality", "?")] += len(series["Instances"])
        return counts

    def delete_studies(self, studies: list[str]) -> None:
        """Delete ``studies`` (Orthanc ids) with every instance in them, results included."""
        for study in dict.fromkeys(studies):
            self.http.delete(f"/studies/{study}")

    def stop(self) -> None:
        """Stop the Orthanc started here and remove its folder (nothing for ``--orthanc-env``)."""
        self.http.close()
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=60)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


# ---- the listener ------------------------------------------------------------------------------------


class Listener:
    """``chestlens listen`` in a subprocess on ``orthanc.listen_port`` (caller ORTHANC, results to Orthanc by
    C-STORE), with a fresh state folder under ``work``; its stderr goes to ``work/listen.log``."""

    def __init__(self, orthanc: Orthanc, work: Path) -> None:
        self.port = orthanc.listen_port
        self.state_dir = work / "state"
        self.log_path = work / "listen.log"
        command = [sys.executable, "-m", "chestlens.cli", "listen", "--port", str(self.port)]
        command += ["--allow", CALLING_AE, "--destination", orthanc.dicom, "--state-dir", str(self.state_dir)]
        command += ["--device", "cpu", "--log-level", "warning"]
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file)
        self.ps = psutil.Process(self.process.pid)

    def echo(self) -> bool:
        """True when a C-ECHO from ``ORTHANC`` is answered with success."""
        ae = AE(ae_title=CALLING_AE)
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = 5
        assoc = ae.associate("127.0.0.1", self.port, ae_title=LISTENER_AE)
        if not assoc.is_established:
            return False
        try:
            status = assoc.send_c_echo()
        finally:
            assoc.release()
        return bool(status) and int(status.Status) == 0

    def wait_ready(self) -> None:
        """Wait until the models are loaded and C-ECHO is answered."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_path.read_text(errors="replace")[-2000:]
                raise SystemExit(f"chestlens listen exited with code {self.process.returncode}:\n{log}")
            if self.echo():
                return
            time.sleep(1.0)
        raise SystemExit(f"chestlens listen did not answer C-ECHO within {READY_TIMEOUT_S:.0f} s")

    def rss_mb(self) -> float:
        """The listener's resident set size (MiB)."""
        return self.ps.memory_info().rss / 2**20

    def inbound(self) -> set[int]:
        """Remote ports of the established connections to the listener's port (one per association)."""
        return {
            c.raddr.port
            for c in self.ps.net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == self.port and c.raddr
        }

    def audit(self) -> list[dict[str, Any]]:
        """The audit log's complete lines (a line being written is left for the next read)."""
        path = self.state_dir / "audit.jsonl"
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]

    def outbox(self) -> list[OutboxItem]:
        """The listener's outbox items (one per result and destination), oldest first."""
        return Outbox(self.state_dir).items()

    def warnings(self) -> list[str]:
        """The listener's log lines (warnings and errors only, at ``--log-level warning``)."""
        return self.log_path.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        """SIGTERM: the listener stops serving, finishes the image being screened and exits."""
        self.process.terminate()
        self.process.wait(timeout=120)


class Sampler(threading.Thread):
    """Samples the listener every ``SAMPLE_S`` seconds: RSS peak, associations open at once, distinct ones."""

    def __init__(self, listener: Listener) -> None:
        super().__init__(daemon=True)
        self.listener = listener
        self.rss_peak_mb = listener.rss_mb()
        self.max_open = 0
        self.seen: set[int] = set()
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.wait(SAMPLE_S):
            try:
                rss, open_now = self.listener.rss_mb(), self.listener.inbound()
            except psutil.Error:  # the listener exited: the run reports it
                return
            self.rss_peak_mb = max(self.rss_peak_mb, rss)
            self.max_open = max(self.max_open, len(open_now))
            self.seen |= open_now

    def stop(self) -> None:
        self.finished.set()
        self.join()


# ---- one mode ----------------------------------------------------------------------------------------


def _timestamp(iso: str) -> float:
    """Seconds since the epoch of an audit log time (ISO 8601 with offset)."""
    return datetime.datetime.fromisoformat(iso).timestamp()


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (linear interpolation), None for no values."""
    return round(float(np.percentile(values, q)), 2) if values else None


def settled(listener: Listener) -> bool:
    """Every image received so far was screened (or refused by the gate, or failed) and every result is out
    of the outbox's pending state."""
    audit = listener.audit()
    events = Counter(str(entry["event"]) for entry in audit)
    results = sum(int(entry.get("results", 0)) for entry in audit if entry["event"] == "screened")
    done = events["screened"] + events["not_reported"] + events["screening_error"]
    items = listener.outbox()
    return (
        done >= events["received"]
        and len(items) >= results
        and not any(item.status == "pending" for item in items)
    )


def run_mode(orthanc: Orthanc, files: list[Path], images: int, jobs: int, work: Path) -> dict[str, Any]:
    """Store ``images`` fresh radiographs in Orthanc, start a listener, have Orthanc push them in ``jobs``
    store jobs at once, wait until every result is delivered (or the deadline), and measure."""
    instances, studies = orthanc.store(radiographs(files, images))
    listener = Listener(orthanc, work)
    try:
        listener.wait_ready()
        rss_ready = listener.rss_mb()
        sampler = Sampler(listener)
        sampler.start()
        chunks = [list(chunk) for chunk in np.array_split(np.array(instances), jobs) if len(chunk)]
        submitted = time.time()
        job_ids = orthanc.push(chunks)
        deadline = time.monotonic() + 120 + 3 * images
        running_peak = 0
        while time.monotonic() < deadline and listener.process.poll() is None:
            states = [str(job["State"]) for job in orthanc.jobs(job_ids)]
            running_peak = max(running_peak, states.count("Running"))
            if all(state in FINISHED for state in states) and settled(listener):
                break
            time.sleep(POLL_S)
        timed_out = time.monotonic() >= deadline
        exit_code = listener.process.poll()
        sampler.stop()
        final = orthanc.jobs(job_ids)
        job_states = Counter(str(job["State"]) for job in final)
        job_errors = [str(job.get("ErrorDescription")) for job in final if job["State"] == "Failure"]
        audit, items = listener.audit(), listener.outbox()
    finally:
        listener.stop()
    in_orthanc = [orthanc.modalities_per_study(study) for study in studies]
    orthanc.delete_studies(studies)
    log_lines = listener.warnings()
    for line in log_lines[:10]:
        print(f"[pacs_load] listener log: {line}", file=sys.stderr)
    return {
        "images": images,
        "jobs": len(job_ids),
        "job_states": dict(job_states),
        "job_errors": job_errors,
        "jobs_running_at_once_max": running_peak,
        "associations_open_at_once_max": sampler.max_open,
        "associations_seen": len(sampler.seen),
        "timed_out": timed_out,
        "listener_exit_code_during_run": exit_code,
        "rss_ready_mb": round(rss_ready, 1),
        "rss_peak_mb": round(sampler.rss_peak_mb, 1),
        "listener_log_lines": len(log_lines),
        **measure(audit, items, in_orthanc, submitted),
    }


def measure(
    audit: list[dict[str, Any]], items: list[OutboxItem], in_orthanc: list[Counter[str]], submitted: float
) -> dict[str, Any]:
    """The figures of one mode from the listener's audit log and outbox, Orthanc's studies and the time the
    store jobs were submitted (seconds since the epoch)."""
    received: dict[str, list[float]] = {}
    for entry in audit:
        if entry["event"] == "received":
            received.setdefault(str(entry["study_key"]), []).append(_timestamp(str(entry["time"])))
    sr_stored: dict[str, float] = {}
    for item in items:
        if item.kind == "SR" and item.status == "delivered" and item.delivered_at is not None:
            key = str(item.study_key)
            sr_stored[key] = min(item.delivered_at, sr_stored.get(key, item.delivered_at))
    latencies = [sr_stored[key] - min(times) for key, times in received.items() if key in sr_stored]
    arrivals = sorted(t for times in received.values() for t in times)
    span = max(sr_stored.values()) - arrivals[0] if arrivals and sr_stored else None
    events = Counter(str(entry["event"]) for entry in audit)
    screened_s = [float(entry["seconds"]) for entry in audit if entry["event"] == "screened"]
    without_results = sum(1 for counts in in_orthanc if counts["SR"] == 0 or counts["SEG"] == 0)
    return {
        "received": len(arrivals),
        "received_more_than_once": sum(1 for times in received.values() if len(times) > 1),
        "screened": events["screened"],
        "not_reported": events["not_reported"],
        "screening_errors": events["screening_error"],
        "refused": events["refused"],
        "associations_rejected": events["association_rejected"],
        "delivery_failed_attempts": events["delivery_failed"],
        "outbox": dict(Counter(item.status for item in items)),
        "srs_stored": len(sr_stored),
        "studies_with_one_sr_and_one_seg": sum(1 for c in in_orthanc if c["SR"] == 1 and c["SEG"] == 1),
        "lost": max(0, without_results - events["not_reported"]),
        "duplicated": sum(1 for c in in_orthanc if c["SR"] > 1 or c["SEG"] > 1)
        + sum(1 for times in received.values() if len(times) > 1),
        "submitted_to_first_received_s": round(arrivals[0] - submitted, 2) if arrivals else None,
        "receive_span_s": round(arrivals[-1] - arrivals[0], 2) if arrivals else None,
        "span_s": round(span, 2) if span else None,
        "images_per_s": round(len(sr_stored) / span, 2) if span else None,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_p99_s": percentile(latencies, 99),
        "latency_max_s": round(max(latencies), 2) if latencies else None,
        "screening_s_mean": round(float(np.mean(screened_s)), 3) if screened_s else None,
    }


# ---- report ------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, cores, load average and the model runtime of the listener."""
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "runtime": f"ONNX Runtime {onnxruntime.__version__} (CPU, chestlens listen --device cpu)",
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as one Markdown table (one row per mode) and the machine line."""
    lines = [
        "| mode | images | associations at once | images/s | p50 s | p95 s | p99 s | max s "
        "| lost | duplicated | failed deliveries |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["modes"]:
        lines.append(
            f"| {row['name']} | {row['images']} | {row['associations_open_at_once_max']} "
            f"| {row['images_per_s']} | {row['latency_p50_s']} | {row['latency_p95_s']} "
            f"| {row['latency_p99_s']} | {row['latency_max_s']} | {row['lost']} | {row['duplicated']} "
            f"| {row['outbox'].get('failed', 0)} |"
        )
    host = report["machine"]
    lines.append("")
    lines.append(
        f"Machine: {host['cpu']}, {host['cores']} cores (load average {host['load_average_1min']} at start), "
        f"{host['runtime']}; Orthanc {report['orthanc']['version']} "
        f"(ConcurrentJobs {report['orthanc']['concurrent_jobs'] or 'not known'}). "
        f"Radiographs: {report['source']}."
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    images = QUICK_IMAGES if args.quick else args.images
    files = picture_files(images)
    distinct = len(files)
    source = (
        f"{distinct} distinct Kermany/NIH pictures as 8-bit DX"
        if files
        else "RG1_UNCR.dcm copies with fresh UIDs (no $CHESTLENS_DATA)"
    )
    if files and distinct < images:
        source += f", repeated to make {images} instances"
    orthanc = Orthanc.from_env() if args.orthanc_env else Orthanc.start(args.parallel)
    report: dict[str, Any] = {
        "command": "python bench/pacs_load.py " + " ".join(args.argv),
        "mode": "quick" if args.quick else "full",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "source": source,
        "orthanc": {"version": orthanc.version(), "concurrent_jobs": orthanc.concurrent_jobs},
        "clock": "listener wall clock: audit 'received' time to the SR outbox item's 'delivered_at'",
        "modes": [],
    }
    try:
        with tempfile.TemporaryDirectory(prefix="chestlens-bench-listen.") as tmp:
            for name, jobs in (("one association", 1), (f"{args.parallel} parallel", args.parallel)):
                work = Path(tmp) / str(jobs)
                work.mkdir()
                row = {"name": name, **run_mode(orthanc, files, images, jobs, work)}
                print(f"[pacs_load] {json.dumps(row)}", file=sys.stderr, flush=True)
                report["modes"].append(row)
    finally:
        orthanc.stop()
    report["table"] = markdown(report)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="radiographs per mode")
    parser.add_argument("--parallel", type=int, default=8, help="store jobs (associations) in parallel mode")
    parser.add_argument(
        "--orthanc-env", action="store_true", help="use the Orthanc of source .ci/orthanc.sh, not our own"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_IMAGES} images (smoke test)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    report = run(args)
    print(report["table"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
