"""Previous against new X-ray screener on the NEW run's validation split: the shipping rule's evidence.

A new screener ships only if it beats the previous one on the validation within-source AUC and on the
shortcut audit (lungs masked out, CAM mass in the lungs, source probe). Both bundles are evaluated and
audited on the same validation images; the table goes into the new bundle
(``training.previous_version``) and its model card is rewritten.

    python bench/compare_screeners.py --old xray3-screener --new runs/xray3-lungs/bundle

:func:`record_candidate` puts a candidate that did not beat the shipped screener into the shipped card.

The previous screener was trained on another split of some of the same sources, so a few of these
validation images may have been among its training images: that favours the previous version.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from chestlens.atomic import write_text_atomic
from chestlens.evaluate.bootstrap import estimate_text
from chestlens.evaluate.kinds import EvaluationRequest, evaluate_bundle, write_model_card
from chestlens.evaluate.shortcut_audit import audit_classifier
from chestlens.models.bundle import load_bundle
from chestlens.models.catalog import resolve_bundle
from chestlens.models.spec import BUNDLE_JSON, read_spec


def figures(bundle: str, splits: Path, split: str, n_boot: int) -> dict[str, Any]:
    """Within-source AUCs (evaluate) and audit figures of one bundle on one split."""
    from chestlens.evaluate.bundle_eval import evaluation_items

    with tempfile.TemporaryDirectory() as tmp:
        request = EvaluationRequest(Path(tmp), splits=splits, split=split, n_boot=n_boot)
        numbers, _ = evaluate_bundle(resolve_bundle(bundle), request)
    classifier = load_bundle(bundle)
    items, _ = evaluation_items(classifier.spec, splits=splits, split=split)
    audit = audit_classifier(classifier, load_bundle("lungs-segmenter"), items, n_boot=n_boot)
    within = {row["question"]: row["pooled"] for row in numbers["within_source"]}
    return {
        "spec": read_spec(bundle),
        "within": within,
        "score": numbers["within_source_score"],
        "macro": numbers["macro_auc"],
        "masked_out": audit["variants"]["lungs masked out"]["macro_auc"],
        "cam": audit["cam_in_lungs"]["mean"],
        "probe": audit.get("source_probe", {}),
    }


def rows(old: dict[str, Any], new: dict[str, Any], split: str) -> list[list[str]]:
    """``[figure, previous, this version]`` rows."""

    def probe(f: dict[str, Any]) -> str:
        excess = f["probe"].get("excess")
        return "n/a" if excess is None else f"{excess:+.3f}"

    out = [
        [
            f"{split}: within-source score (mean of the two questions)",
            f"{old['score']:.3f}",
            f"{new['score']:.3f}",
        ]
    ]
    for question in ("COVID-19 vs rest", "pneumonia vs normal"):
        out.append(
            [
                f"{split}: {question}, within-source",
                estimate_text(old["within"].get(question)),
                estimate_text(new["within"].get(question)),
            ]
        )
    out += [
        [
            f"{split}: pooled macro AUC (includes between-source pairs)",
            estimate_text(old["macro"]),
            estimate_text(new["macro"]),
        ],
        [
            f"{split}: lungs masked out, macro AUC",
            estimate_text(old["masked_out"]),
            estimate_text(new["masked_out"]),
        ],
        [f"{split}: Grad-CAM mass in the lungs, mean", f"{old['cam']:.2f}", f"{new['cam']:.2f}"],
        [f"{split}: source probe, accuracy above majority", probe(old), probe(new)],
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="xray3-screener")
    parser.add_argument(
        "--new", type=Path, required=True, help="the new bundle folder (its run holds splits.csv)"
    )
    parser.add_argument("--split", default="val")
    parser.add_argument("--boot", type=int, default=500)
    args = parser.parse_args()
    run = args.new.parent
    splits = run / "splits.csv"
    old = figures(args.old, splits, args.split, args.boot)
    new = figures(str(args.new), splits, args.split, args.boot)
    table = rows(old, new, args.split)
    beats = (
        new["score"] > old["score"]
        and new["masked_out"]["value"] < old["masked_out"]["value"]
        and new["cam"] > old["cam"]
    )
    spec = read_spec(args.new)
    previous = {
        "name": old["spec"].name,
        "version": old["spec"].version,
        "rows": table,
        "beats_previous": beats,
        "split": f"{args.split} split of {splits}",
    }
    training = spec.training.model_copy(update={"previous_version": previous})
    spec = spec.model_copy(update={"training": training})
    write_text_atomic(args.new / BUNDLE_JSON, json.dumps(spec.model_dump(mode="json"), indent=2) + "\n")
    write_model_card(args.new, run / "test-report" / "report.json")
    for row in table:
        print(" | ".join(row))
    print(f"new beats previous on validation within-source score and the audit: {beats}")


def record_candidate(shipped: Path, candidate: Path, test_report: Path, reproduce: str) -> None:
    """When the candidate did not beat the shipped bundle: give the shipped bundle's card the recipe
    table and the comparison (``training.candidate``), and its test metrics re-measured with the
    within-source AUCs (``test_report``: ``chestlens evaluate`` of its own test split)."""
    from chestlens.evaluate.bundle_eval import metrics_summary
    from chestlens.evaluate.report import ReportDocument

    new = read_spec(candidate)
    previous = new.training.previous_version
    spec = read_spec(shipped)
    report = ReportDocument.model_validate_json(test_report.read_text())
    candidate_info = {
        "recipe_grid": new.training.recipe_grid,
        "comparison": previous["rows"],
        "rule": "a new version ships only if it beats this one on the validation within-source score "
        "and on the audit (lungs masked out lower, CAM mass in the lungs higher): "
        + ("it did" if previous["beats_previous"] else "it did not"),
        "reproduce": reproduce,
    }
    spec = spec.model_copy(
        update={
            "training": spec.training.model_copy(update={"candidate": candidate_info}),
            "metrics": {**spec.metrics, "test": metrics_summary(report.metrics, spec.labels)},
        }
    )
    write_text_atomic(shipped / BUNDLE_JSON, json.dumps(spec.model_dump(mode="json"), indent=2) + "\n")
    write_model_card(shipped, test_report)


if __name__ == "__main__":
    main()
