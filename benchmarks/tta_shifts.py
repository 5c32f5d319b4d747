"""Does test-time augmentation pay? Validation accuracy of an exported model averaged over shifted views.

Run: python benchmarks/tta_shifts.py [exports/NAME.json] --data-dir ../shared/data/kmnist

Loads the export's float32 Keras reference and the validation split its card records (images no
member trained on), predicts every view once (the image shifted by up to one pixel, the vacated
border filled with background), and prints the validation accuracy of averaging the probabilities
over each set of views, with the number of forward passes each costs per image. The test set is
left alone: ``--test`` adds it for the one set chosen beforehand. Measured on the shipped model (the
default card), it writes benchmarks/records/tta_shifts.json and the BENCHMARKS.md section rendered from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from records import BENCHMARKS, ROOT, description, publish, write_record

from kmnist_search.data.datasets import load_dataset
from kmnist_search.export.convert import keras_probabilities, load_keras_model, without_augmentation

SHIPPED_CARD = ROOT / "exports" / "kmnist-reference.json"
RECORD = ROOT / "benchmarks" / "records" / "tta_shifts.json"
DOCUMENT = BENCHMARKS
MARKER = "figures:tta-shifts"
SHIFTS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
VIEW_SETS = {
    "identity": [(0, 0)],
    "identity + left/right": [(0, 0), (0, -1), (0, 1)],
    "identity + up/down": [(0, 0), (-1, 0), (1, 0)],
    "identity + 4 neighbours": [(0, 0), (0, -1), (0, 1), (-1, 0), (1, 0)],
    "all 9 shifts": SHIFTS,
    "4 diagonals": [(-1, -1), (-1, 1), (1, -1), (1, 1)],
}


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(N, H, W) images moved dy rows down and dx columns right (|dy|, |dx| <= 1), the vacated border 0."""
    height, width = images.shape[1:]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    return padded[:, 1 - dy:1 - dy + height, 1 - dx:1 - dx + width]


def render(record: dict[str, Any]) -> str:
    rows = record["view_sets"]
    alone = rows[0]
    best = max(rows, key=lambda row: row["val_accuracy"])
    passes = [row["passes"] for row in rows[1:]]
    lines = [f"`{record['command']}` ({record['date']}, {record['machine']}): the float32 Keras model of "
             f"`exports/{record['card']}`, on its {record['validation_images']:,} validation images.", "",
             "| views averaged | forward passes per image | val acc | val errors |", "|---|---|---|---|"]
    lines += [f"| {row['views']} | {row['passes']} | {row['val_accuracy']:.2%} | {row['val_errors']} |" for row in rows]
    lines += ["", f"The image alone: {alone['val_accuracy']:.2%}. " + (
        f"No set of shifted views does better, so views would only add latency (x{min(passes)} to x{max(passes)}): "
        "no test-time augmentation is exported." if best["val_accuracy"] <= alone["val_accuracy"] else
        f"The best, {best['views']}, reaches {best['val_accuracy']:.2%} for {best['passes']} forward passes per "
        "image.")]
    return "\n".join(lines)


def measure(card_path: Path, data_dir: Path | None, test: str | None) -> dict[str, Any]:
    card = json.loads(card_path.read_text())
    model = without_augmentation(load_keras_model(card_path.with_name(card["keras_file"])))
    data = load_dataset("kmnist", data_dir)
    split = data.split(card["split"]["validation_images"], card["split"]["seed"])
    views = {shift: keras_probabilities(model, shifted(split.validation_images, *shift)) for shift in SHIFTS}
    rows = []
    for name, shifts in VIEW_SETS.items():
        correct = np.mean([views[s] for s in shifts], axis=0).argmax(axis=1) == split.validation_labels
        rows.append({"views": name, "passes": len(shifts), "val_accuracy": round(float(correct.mean()), 6),
                     "val_errors": int((~correct).sum())})
        print(rows[-1], flush=True)
    if test:
        for name in dict.fromkeys(["identity", test]):
            probabilities = np.mean([keras_probabilities(model, shifted(data.test_images, *s))
                                     for s in VIEW_SETS[name]], axis=0)
            print(f"test, {name}: {np.mean(probabilities.argmax(axis=1) == data.test_labels):.2%}")
    return {"card": card_path.name, "validation_images": len(split.validation_labels), "view_sets": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("card", type=Path, nargs="?", default=SHIPPED_CARD, help="an export's model card "
                        "(default: the shipped model's)")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--test", choices=list(VIEW_SETS), help="also measure this view set on the test set")
    parser.add_argument("--render-only", action="store_true", help="rewrite the BENCHMARKS.md section from the record")
    args = parser.parse_args()
    if not args.render_only:
        figures = measure(args.card, args.data_dir, args.test)
        if args.card.resolve() != SHIPPED_CARD.resolve():
            return 0  # another model's figures are printed, not recorded
        write_record(RECORD, "python benchmarks/tta_shifts.py --data-dir D", figures)
    publish(RECORD, DOCUMENT, MARKER, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
