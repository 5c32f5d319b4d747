"""Does test-time augmentation pay? Validation accuracy of an exported model averaged over shifted views.

Run: python benchmarks/tta_shifts.py exports/NAME.json --data-dir ../shared/data/kmnist

Loads the export's float32 Keras reference and the validation split its card records (images no
member trained on), predicts every view once (the image shifted by up to one pixel, the vacated
border filled with background), and prints the validation accuracy of averaging the probabilities
over each set of views, with the number of forward passes each costs per image. The test set is
left alone: ``--test`` adds it for the one set chosen beforehand.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
from records import description

from kmnist_search.data.datasets import load_dataset
from kmnist_search.export.convert import keras_probabilities, load_keras_model, without_augmentation

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


def main() -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("card", type=Path, help="an export's model card (exports/NAME.json)")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--test", choices=list(VIEW_SETS), help="also measure this view set on the test set")
    args = parser.parse_args()

    card = json.loads(args.card.read_text())
    model = without_augmentation(load_keras_model(args.card.with_name(card["keras_file"])))
    data = load_dataset("kmnist", args.data_dir)
    split = data.split(card["split"]["validation_images"], card["split"]["seed"])
    print(f"# {args.card.name}: {len(split.validation_labels)} validation images; python {platform.python_version()}")
    views = {shift: keras_probabilities(model, shifted(split.validation_images, *shift)) for shift in SHIFTS}
    print("| views | forward passes per image | val acc | val errors |")
    print("|---|---|---|---|")
    for name, shifts in VIEW_SETS.items():
        correct = np.mean([views[s] for s in shifts], axis=0).argmax(axis=1) == split.validation_labels
        print(f"| {name} | {len(shifts)} | {correct.mean():.2%} | {int((~correct).sum())} |")
    if args.test:
        for name in dict.fromkeys(["identity", args.test]):
            probabilities = np.mean([keras_probabilities(model, shifted(data.test_images, *s))
                                     for s in VIEW_SETS[name]], axis=0)
            print(f"test, {name}: {np.mean(probabilities.argmax(axis=1) == data.test_labels):.2%}")


if __name__ == "__main__":
    main()
