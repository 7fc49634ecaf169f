"""Peak memory and time of screening a small file that decodes to a huge picture, with and without
shrinking at read time (``chestlens.io.raster``: pictures above ``READ_MAX_SIDE`` are shrunk while read).

    python bench/read_memory.py [--side 10000] [--json OUT.json]

Each case runs in a fresh child process: load the screener, screen ``RG1_UNCR.dcm`` once (warm-up), then
screen the test picture; it reports the peak RSS after the warm-up (``ru_maxrss``), the growth the test
picture caused and the time ``Screener.screen`` took. "full size" reads the picture as before the change
(``READ_MAX_SIDE`` set to None in the child). Pictures: an all-black 8-bit PNG of ``side`` x ``side``
pixels (about 97 KB for 10000 x 10000, as in the reliability audit) and RG1 scaled up to that size.
Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
import chestlens.pipeline.case as case
from chestlens.io.samples import sample_path
from chestlens.pipeline.screener import Screener
if sys.argv[2] == "full size":
    case.READ_MAX_SIDE = None
screener = Screener()
screener.screen(sample_path("RG1_UNCR.dcm"))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
result = screener.screen(sys.argv[1]).result
ms = (time.perf_counter() - start) * 1000
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_mb": round(peak), "growth_mb": round(peak - before), "ms": round(ms),
                  "accepted": result.gate.accepted, "rows": result.input.rows}))
"""


def pictures(folder: Path, side: int) -> dict[str, Path]:
    """The test pictures, written into ``folder``."""
    import numpy as np
    from PIL import Image

    from chestlens.io import read_image
    from chestlens.io.samples import sample_path

    black = folder / "black.png"
    Image.fromarray(np.zeros((side, side), np.uint8)).save(black)
    rg1 = read_image(sample_path("RG1_UNCR.dcm")).pixels
    scaled = folder / "rg1.png"
    picture = Image.fromarray((rg1 * 255).astype(np.uint8)).resize((side, side), Image.Resampling.NEAREST)
    picture.save(scaled)
    return {
        f"black PNG {black.stat().st_size / 1e3:.0f} KB": black,
        f"RG1 PNG {scaled.stat().st_size / 1e6:.1f} MB": scaled,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=10000, help="picture side (pixels)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in pictures(Path(tmp), args.side).items():
            for mode in ("full size", "shrunk at read"):
                done = subprocess.run(
                    [sys.executable, "-c", CHILD, str(path), mode], capture_output=True, text=True, check=True
                )
                rows.append(
                    {"picture": name, "read": mode, **json.loads(done.stdout.strip().splitlines()[-1])}
                )
    print(f"| picture ({args.side} x {args.side}) | read | growth MB | peak MB | screen ms | rows read |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['picture']} | {r['read']} | {r['growth_mb']} | {r['peak_mb']} | {r['ms']} | {r['rows']} |"
        )
    report = {"side": args.side, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
