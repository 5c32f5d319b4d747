"""What a residual network's training epoch costs, by depth and width, against the dry run's cost model.

Run: python benchmarks/residual_epoch_cost.py [--steps 20] [--rounds 3]

Builds pre-activation ResNets of several depths and widths (SGD, batch 128, no augmentation), trains
each on the same random batches in turn, round after round, and keeps each network's fastest round:
the machine's noise hits every network alike. Prints the training seconds per 54,000 images, each
network's cost relative to ResNet-20 of width 16 as measured and as :mod:`kmnist_search.search.plan` models
it, with the multiply-adds and activation values per image the model prices.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from records import description

from kmnist_search.search.hypermodel import Architecture, build_network
from kmnist_search.search.plan import activation_elements, multiply_adds, network_cost

NETWORKS = [(14, 24), (8, 16), (14, 16), (20, 16), (8, 24)]  # (depth, width)
REFERENCE = (20, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--steps", type=int, default=20, help="batches of 128 per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (128 * args.steps, 28, 28, 1)).astype(np.float32)
    targets = np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(images))]
    models = {net: build_network(optimizer="sgd", learning_rate=0.1, architecture=Architecture(
        network="preact_resnet", resnet_depth=net[0], resnet_width=net[1])) for net in NETWORKS}
    for model in models.values():  # trace and warm up
        model.fit(images[:256], targets[:256], batch_size=128, epochs=1, verbose=0)
    seconds: dict[tuple[int, int], list[float]] = {net: [] for net in NETWORKS}
    for _ in range(args.rounds):
        for net, model in models.items():
            started = time.perf_counter()
            model.fit(images, targets, batch_size=128, epochs=1, verbose=0)
            seconds[net].append(time.perf_counter() - started)

    def values(net: tuple[int, int]) -> dict[str, object]:
        return {"network": "preact_resnet", "resnet_depth": net[0], "resnet_width": net[1]}

    per_54k = {net: min(times) / len(images) * 54000 for net, times in seconds.items()}
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {args.rounds} rounds of {args.steps} "
          f"batches of 128, fastest round kept")
    print("| network | multiply-adds per image | activation values per image | training s per 54k images "
          "| cost vs ResNet-20 w16, measured | modelled |")
    print("|---|---|---|---|---|---|")
    for net in NETWORKS:
        modelled = network_cost(values(net)) / network_cost(values(REFERENCE))
        print(f"| ResNet-{net[0]} width {net[1]} | {multiply_adds(values(net)) / 1e6:.1f} M "
              f"| {activation_elements(values(net)) / 1e3:.0f} k | {per_54k[net]:.0f} "
              f"| {per_54k[net] / per_54k[REFERENCE]:.2f} | {modelled:.2f} |")


if __name__ == "__main__":
    main()
