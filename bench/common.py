"""What the bench scripts share: the JSON-report command line and the real radiographs they read."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def json_main(
    description: str,
    argv: list[str] | None,
    configure: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], dict[str, Any]],
) -> dict[str, Any]:
    """Parse ``argv`` (the script's own options from ``configure``, plus ``--json PATH``), run, print the
    report as JSON, write it to ``--json`` if given, and return it."""
    parser = argparse.ArgumentParser(description=description)
    configure(parser)
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    report = run(args)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


def shared_radiographs(limit: int = 24) -> list[Path]:
    """Real radiographs: Kermany and ieee8023 images under ``$CHESTLENS_DATA`` (half each), or the
    pip-shipped RG1 radiograph as a 2 MP PNG when there is no data."""
    from chestlens.data.root import data_root

    root = data_root()
    files: list[Path] = []
    if root is not None:
        for folder in (root / "kermany-chest-xray", root / "covid-chestxray-dataset" / "images"):
            found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            files += [p.resolve() for p in found[: limit // 2]]
    if files:
        return files
    sys.path.insert(0, str(Path(__file__).parent))
    from pipeline_latency import two_megapixel_png

    return [two_megapixel_png(Path(tempfile.mkdtemp()))]
