"""The search for a model to ship: the `deploy` space searched without a budget and with one, every trial
measured as it would ship.

Run: python benchmarks/deployment_budget.py --data-dir ../shared/data/kmnist [--budget-ms 0.3 --budget-mb 0.2]

Runs `python -m kmnist_search.run --space deploy --quantize` twice through the library (run folders
`runs/bench-deploy` and `runs/bench-deploy-budget`, exports in `runs/bench-deploy-exports`): once without
a budget, once with `--budget-ms` and `--budget-mb`. Records, in benchmarks/deployment_budget.json:
every trial's validation accuracy, int8 size and latency (and the reference ratio), the Pareto front,
each run's winner, what measuring cost (CPU seconds per trial, and as a share of the trials' training
CPU seconds), and for each run's exported winner an independent onnxruntime timing of the exported file
(a plain one-thread session, median of many single-image calls) beside the latency the search recorded
for its trial. Renders the BENCHMARKS.md section `deployment`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from records import BENCHMARKS, ROOT, description, publish, write_record

RECORD = ROOT / "benchmarks" / "deployment_budget.json"
DOCUMENT = BENCHMARKS
INDEPENDENT_CALLS = 300


def independent_latency(onnx_path: Path, images: np.ndarray) -> float:
    """Median milliseconds of one-image calls on a plain onnxruntime session with one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batches = [images[i % len(images)][np.newaxis, ..., np.newaxis].astype(np.float32)
               for i in range(INDEPENDENT_CALLS)]
    for batch in batches[:20]:
        session.run(None, {name: batch})
    timings = []
    for batch in batches:
        started = time.perf_counter()
        session.run(None, {name: batch})
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def trial_rows(outcome: Any) -> list[dict[str, Any]]:
    rows = []
    for trial in outcome.search.results.trials:
        if trial.deployment is None:
            continue
        shipped = trial.deployment.shipped()
        training_cpu = sum(e.cpu_seconds or 0.0 for e in trial.history)
        rows.append({"trial": int(trial.trial_id) + 1, "conv_layers": trial.hyperparameters["conv_layers"],
                     "dense_units": trial.hyperparameters["dense_units"],
                     "val_accuracy": round(trial.score or 0.0, 4), "int8_bytes": shipped.onnx_bytes,
                     "float_bytes": trial.deployment.onnx_bytes, "int8_ms": shipped.speed.single_image_ms,
                     "ratio_to_reference": shipped.speed.ratio_to_reference,
                     "measure_cpu_seconds": trial.deployment.measure_seconds,
                     "training_cpu_seconds": round(training_cpu, 1)})
    return rows


def winner_row(outcome: Any, images: np.ndarray) -> dict[str, Any]:
    results = outcome.search.results
    trial = results.trial(results.winner.trial_id)
    exported = outcome.quantized or outcome.export
    recorded = trial.deployment.shipped().speed.single_image_ms
    independent = independent_latency(exported.onnx_path, images)
    return {"trial": int(trial.trial_id) + 1, "test_accuracy": round(results.winner.test_accuracy, 4),
            "budget": results.budget.to_dict() if results.budget else None,
            "recorded_ms": recorded, "independent_ms": round(independent, 4),
            "independent_over_recorded": round(independent / recorded, 3),
            "exported_bytes": exported.onnx_path.stat().st_size}


def render(record: dict[str, Any]) -> str:
    rows = record["trials"]
    front = set(record["front"])
    lines = [f"`{record['command']}` ({record['machine']}, {record['date']}). Each trial's int8 copy as it ships; "
             "latency by the protocol of `kmnist_search/export/latency.py` (one thread, beside the fixed "
             "reference).", "",
             "| trial | conv layers | dense | val accuracy | int8 bytes | ms per image | x reference | on the front |",
             "|---:|---|---:|---:|---:|---:|---:|:---:|"]
    lines += [f"| {r['trial']} | {r['conv_layers']} | {r['dense_units']} | {r['val_accuracy'] * 100:.2f}% | "
              f"{r['int8_bytes']:,} | {r['int8_ms']:.3f} | {r['ratio_to_reference']:.2f} | "
              f"{'yes' if r['trial'] in front else ''} |" for r in rows]
    measure = sum(r["measure_cpu_seconds"] for r in rows)
    training = sum(r["training_cpu_seconds"] for r in rows)
    lines += ["", f"- Measuring cost {measure / len(rows):.1f} CPU seconds per trial, {measure / training * 100:.0f}% "
              f"of the trials' training CPU seconds."]
    for label, winner in (("Without a budget", record["unbudgeted"]), ("With the budget", record["budgeted"])):
        budget = winner["budget"]
        limits = f" ({budget['max_ms']:g} ms, {budget['max_mb']:g} MB)" if budget else ""
        lines.append(f"- {label}{limits}: trial {winner['trial']}, test accuracy {winner['test_accuracy'] * 100:.2f}%, "
                     f"{winner['exported_bytes']:,} bytes exported; recorded {winner['recorded_ms']:.3f} ms, an "
                     f"independent onnxruntime timing of the exported file {winner['independent_ms']:.3f} ms "
                     f"({winner['independent_over_recorded']:.2f}x).")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--budget-ms", type=float, default=0.3)
    parser.add_argument("--budget-mb", type=float, default=0.2)
    parser.add_argument("--render-only", action="store_true", help="redraw the BENCHMARKS.md section from the record")
    args = parser.parse_args()
    if not args.render_only:
        measure(args)
    publish(RECORD, DOCUMENT, "deployment", render)
    return 0


def measure(args: argparse.Namespace) -> None:
    """Search the deploy space without and with the budget; write the record."""
    from kmnist_search import pipeline
    from kmnist_search.data.datasets import load_dataset
    from kmnist_search.report.rankings import pareto_front

    dataset = load_dataset("kmnist", args.data_dir)
    common: dict[str, Any] = {"dataset": dataset, "project_dir": ROOT / "runs",
                              "exports_dir": ROOT / "runs" / "bench-deploy-exports", "quantize_export": True,
                              "report": True, "measure": True}
    free = pipeline.run("deploy", "grid", name="bench-deploy", **common)
    budgeted = pipeline.run("deploy", "grid", name="bench-deploy-budget", budget_ms=args.budget_ms,
                            budget_mb=args.budget_mb, **common)
    images = dataset.test_images[:100]
    front = [int(t.trial_id) + 1 for t in pareto_front(free.search.results.trials)]
    command = " ".join(["python benchmarks/deployment_budget.py", *sys.argv[1:]]).replace(str(args.data_dir), "D")
    write_record(RECORD, command, {"trials": trial_rows(free), "front": front,
                                   "unbudgeted": winner_row(free, images), "budgeted": winner_row(budgeted, images)})


if __name__ == "__main__":
    sys.exit(main())
