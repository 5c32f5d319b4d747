"""What a residual network's training epoch costs, by depth and width, against the dry run's cost model.

Run: python benchmarks/residual_epoch_cost.py [--steps 20] [--rounds 4]

Builds pre-activation ResNets of several depths and widths (SGD, batch 128, no augmentation), trains
each on the same random batches in turn, round after round, and keeps each network's fastest round:
the machine's noise hits every network alike. Prints the training seconds per 54,000 images, each
network's cost relative to ResNet-20 of width 16 as measured and as :mod:`kmnist_search.search.plan` models
it, with the multiply-adds and activation values per image the model prices. Writes
benchmarks/records/residual_epoch_cost.json and the BENCHMARKS.md section rendered from it.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from records import BENCHMARKS, ROOT, description, publish, write_record

from kmnist_search.search.hypermodel import Architecture, build_network
from kmnist_search.search.plan import ACTIVATION_COST, activation_elements, multiply_adds, network_cost

NETWORKS = [(14, 24), (8, 16), (14, 16), (20, 16), (8, 24)]  # (depth, width)
REFERENCE = (20, 16)
RECORD = ROOT / "benchmarks" / "records" / "residual_epoch_cost.json"
DOCUMENT = BENCHMARKS
MARKER = "figures:residual-epoch-cost"


def values(net: tuple[int, int]) -> dict[str, object]:
    return {"network": "preact_resnet", "resnet_depth": net[0], "resnet_width": net[1]}


def render(record: dict[str, Any]) -> str:
    lines = [f"`{record['command']}` ({record['date']}, {record['machine']}; {record['rounds']} rounds of "
             f"{record['steps']} batches of 128 random images per network, in turn, fastest round kept; SGD, no "
             "augmentation, no validation):", "",
             "| network | multiply-adds per image | activation values per image | training s per 54k images "
             "| cost vs ResNet-20 w16, measured | modelled |", "|---|---|---|---|---|---|"]
    reference = next(n for n in record["networks"] if (n["depth"], n["width"]) == REFERENCE)
    for net in record["networks"]:
        lines.append(f"| ResNet-{net['depth']} width {net['width']} | {net['multiply_adds'] / 1e6:.1f} M "
                     f"| {net['activation_values'] / 1e3:.0f} k | {net['seconds_per_54k_images']:.0f} "
                     f"| {net['seconds_per_54k_images'] / reference['seconds_per_54k_images']:.2f} "
                     f"| {net['modelled_cost']:.2f} |")
    largest = max(record["networks"], key=lambda n: n["multiply_adds"])
    measured = {(n["depth"], n["width"]): n["seconds_per_54k_images"] / reference["seconds_per_54k_images"]
                for n in record["networks"]}
    worst = max(abs(measured[n["depth"], n["width"]] - n["modelled_cost"]) for n in record["networks"])
    lines += ["", f"Multiply-adds alone would price ResNet-{largest['depth']} of width {largest['width']} at "
              f"{largest['multiply_adds'] / reference['multiply_adds']:.2f} times ResNet-20's cost; it measures "
              f"{measured[largest['depth'], largest['width']]:.2f}: the element-wise passes of batch normalisation, "
              "ReLU and the additions weigh too. `kmnist_search/search/plan.py` prices a residual network at its "
              f"multiply-adds plus {ACTIVATION_COST} per activation value (fitted to an earlier measurement of "
              "these five networks), scaled to keep ResNet-20's calibration; each network's modelled ratio is "
              f"within {worst:.2f} of the measured one."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--steps", type=int, default=20, help="batches of 128 per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--render-only", action="store_true", help="rewrite the BENCHMARKS.md section from the record")
    args = parser.parse_args()
    if not args.render_only:
        per_54k = measure(args.steps, args.rounds)
        networks = [{"depth": net[0], "width": net[1], "multiply_adds": multiply_adds(values(net)),
                     "activation_values": activation_elements(values(net)),
                     "seconds_per_54k_images": round(per_54k[net], 2),
                     "modelled_cost": round(network_cost(values(net)) / network_cost(values(REFERENCE)), 4)}
                    for net in NETWORKS]
        write_record(RECORD, f"python benchmarks/residual_epoch_cost.py --steps {args.steps} --rounds {args.rounds}",
                     {"steps": args.steps, "rounds": args.rounds, "networks": networks})
    publish(RECORD, DOCUMENT, MARKER, render)
    return 0


def measure(steps: int, rounds: int) -> dict[tuple[int, int], float]:
    """Each network's training seconds per 54,000 images: its fastest of ``rounds`` rounds."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (128 * steps, 28, 28, 1)).astype(np.float32)
    targets = np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(images))]
    models = {net: build_network(optimizer="sgd", learning_rate=0.1, architecture=Architecture(
        network="preact_resnet", resnet_depth=net[0], resnet_width=net[1])) for net in NETWORKS}
    for model in models.values():  # trace and warm up
        model.fit(images[:256], targets[:256], batch_size=128, epochs=1, verbose=0)
    seconds: dict[tuple[int, int], list[float]] = {net: [] for net in NETWORKS}
    for _ in range(rounds):
        for net, model in models.items():
            started = time.perf_counter()
            model.fit(images, targets, batch_size=128, epochs=1, verbose=0)
            seconds[net].append(time.perf_counter() - started)
    return {net: min(times) / len(images) * 54000 for net, times in seconds.items()}


if __name__ == "__main__":
    sys.exit(main())
