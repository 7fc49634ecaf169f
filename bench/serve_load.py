"""Load test of ``chestlens serve`` on 127.0.0.1: concurrent clients posting real radiographs.

    python bench/serve_load.py [--duration 60] [--levels 1,4,16] [--max-requests 20000]
                               [--max-batch 8] [--no-compare] [--quick] [--json out.json]

The server runs as a user would run it (``python -m chestlens.cli serve`` in a subprocess, SQLite in a
temporary data folder, every result stored with its overlay PNGs). For each concurrency level, that many
clients post real radiographs (Kermany JPEG and NIH PNG from ``$CHESTLENS_DATA``, or the pip-shipped RG1
DICOM without data) back to back for ``--duration`` seconds (at most ``--max-requests`` requests): throughput
(requests/s), p50/p95/p99 latency (ms), errors (any answer but 200, or a failed connection), and the
server's RSS at the start and end of each level and of the whole run (the run starts after a warm-up
burst of one request per client of the largest level, so that full batches have run once: growth after
it is what a long-running server would keep adding). The same levels run again with
``--max-batch 1`` (one request at a time through the models, no micro-batching) unless ``--no-compare``.
``--quick``: 3 s per level at 1 and 4 clients (a smoke test, not a measurement). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from chestlens.export.browser import free_port

READY_TIMEOUT_S = 300.0


def radiographs(count: int) -> list[bytes]:
    """``count`` real radiographs' bytes: Kermany JPEG and NIH PNG alternating, or RG1 without data."""
    from chestlens.data.root import data_root

    root = data_root() or Path(__file__).resolve().parents[2] / "shared" / "data"
    kermany = sorted((root / "kermany-chest-xray").rglob("*.jpeg"))
    nih = sorted((root / "nih-chestxray14-darkcovidnet").rglob("*.png"))
    mixed = [p for pair in zip(kermany, nih, strict=False) for p in pair][:count]
    if not mixed:
        from chestlens.io.samples import sample_path

        mixed = [sample_path("RG1_UNCR.dcm")]
    return [p.read_bytes() for p in mixed]


class Server:
    """``chestlens serve`` in a subprocess with the given ``--max-batch``; :meth:`rss_mb` of the process."""

    def __init__(self, max_batch: int, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "chestlens.cli", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(data_dir), "--max-batch", str(max_batch), "--log-level", "warning"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ps = psutil.Process(self.process.pid)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chestlens serve exited with code {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise TimeoutError("chestlens serve did not become ready")

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


async def _client(
    url: str, images: list[bytes], offset: int, end: float, budget: list[int], out: list
) -> None:
    async with httpx.AsyncClient(timeout=120) as http:
        index = offset
        while time.monotonic() < end and budget[0] > 0:
            budget[0] -= 1
            data = images[index % len(images)]
            index += 1
            start = time.perf_counter()
            try:
                response = await http.post(f"{url}/api/v1/screenings", files={"file": ("image", data)})
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            out.append((time.perf_counter() - start, status))


def warm_up(url: str, images: list[bytes], clients: int) -> None:
    """One request per client, all at once (no timing kept)."""

    async def burst() -> None:
        async with httpx.AsyncClient(timeout=300) as http:
            await asyncio.gather(
                *(
                    http.post(f"{url}/api/v1/screenings", files={"file": ("image", images[i % len(images)])})
                    for i in range(clients)
                )
            )

    asyncio.run(burst())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_level(server: Server, images: list[bytes], clients: int, duration: float, max_requests: int) -> dict:
    """``clients`` concurrent clients for ``duration`` seconds (or ``max_requests`` requests in all)."""
    rss_start = server.rss_mb()
    results: list[tuple[float, int]] = []
    budget = [max_requests]
    began = time.monotonic()
    end = began + duration

    async def all_clients() -> None:
        await asyncio.gather(*(_client(server.url, images, i, end, budget, results) for i in range(clients)))

    asyncio.run(all_clients())
    elapsed = time.monotonic() - began
    ok = [seconds * 1000 for seconds, status in results if status == 200]
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(results),
        "errors": len(results) - len(ok),
        "error_statuses": sorted({status for _, status in results if status != 200}),
        "throughput_rps": round(len(ok) / elapsed, 2),
        "p50_ms": round(statistics.median(ok), 1) if ok else None,
        "p95_ms": round(_percentile(ok, 95), 1) if ok else None,
        "p99_ms": round(_percentile(ok, 99), 1) if ok else None,
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(server.rss_mb(), 1),
    }


def run_mode(
    max_batch: int, images: list[bytes], levels: list[int], duration: float, max_requests: int
) -> dict:
    """One server with ``--max-batch max_batch`` through every level; RSS over the whole run."""
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(max_batch, Path(data_dir))
        try:
            server.wait_ready()
            # warm-up at the largest level, so that full batches have run once before RSS is taken
            warm_up(server.url, images, max(levels))
            rss_start = server.rss_mb()
            rows = []
            for clients in levels:
                rows.append(run_level(server, images, clients, duration, max_requests))
                print(f"[serve_load] max_batch={max_batch} {rows[-1]}", file=sys.stderr, flush=True)
            rss_end = server.rss_mb()
        finally:
            server.stop()
    return {
        "max_batch": max_batch,
        "levels": rows,
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_growth_pct": round((rss_end / rss_start - 1) * 100, 1),
    }


def markdown(report: dict) -> str:
    """The report as one Markdown table (one row per mode and level)."""
    lines = [
        "| mode | clients | requests | errors | req/s | p50 ms | p95 ms | p99 ms | RSS start → end MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for mode in report["modes"]:
        name = "one at a time" if mode["max_batch"] == 1 else f"micro-batching (max {mode['max_batch']})"
        for row in mode["levels"]:
            lines.append(
                f"| {name} | {row['clients']} | {row['requests']} | {row['errors']} "
                f"| {row['throughput_rps']} | {row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} "
                f"| {row['rss_start_mb']:.0f} → {row['rss_end_mb']:.0f} |"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    duration = 3.0 if args.quick else args.duration
    levels = [1, 4] if args.quick else [int(n) for n in args.levels.split(",")]
    images = radiographs(4 if args.quick else args.images)
    batches = [args.max_batch] if args.no_compare else [args.max_batch, 1]
    report: dict[str, Any] = {
        "command": "python bench/serve_load.py " + " ".join(args.argv),
        "mode": "quick" if args.quick else "full",
        "duration_s": duration,
        "images": len(images),
        "image_bytes_mean": round(statistics.mean(len(i) for i in images)),
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "modes": [run_mode(b, images, levels, duration, args.max_requests) for b in batches],
    }
    report["table"] = markdown(report)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per concurrency level")
    parser.add_argument("--levels", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--max-requests", type=int, default=20000, help="cap per level")
    parser.add_argument("--images", type=int, default=16, help="distinct radiographs posted in turn")
    parser.add_argument("--max-batch", type=int, default=8, help="the server's micro-batch size")
    parser.add_argument("--no-compare", action="store_true", help="skip the --max-batch 1 run")
    parser.add_argument("--quick", action="store_true", help="3 s at 1 and 4 clients (smoke test)")
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
