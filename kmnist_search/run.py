"""Run a hyperparameter search: ``python -m kmnist_search.run --strategy grid --space quick``.

Rerunning the same command resumes an interrupted search; ``--overwrite`` starts afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kmnist_search.cli import OneLineArgumentParser, quiet_tensorflow_logs, run_main
from kmnist_search.datasets import load_dataset
from kmnist_search.distillation import DEFAULT_TEACHER_TEMPERATURE, DEFAULT_TEACHER_WEIGHT, load_teacher
from kmnist_search.distributed import DEFAULT_ORACLE, ROLES, tuner_id
from kmnist_search.distributed import configure as configure_distribution
from kmnist_search.errors import RunError
from kmnist_search.plan import STRATEGIES, describe_plan
from kmnist_search.spaces import load_space

DEFAULT_SPACE = "report"


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m kmnist_search.run",
        description="Search the study's CNN hyperparameters on KMNIST with Keras Tuner, evaluate the winner "
                    "once on the test set, and export it to ONNX.",
    )
    parser.add_argument("--strategy", choices=STRATEGIES, default="grid", help="search strategy (default grid)")
    parser.add_argument("--space", default=DEFAULT_SPACE,
                        help="built-in space name (report, quick) or a .toml path (default report)")
    parser.add_argument("--dataset", default="kmnist", help="dataset name (default kmnist)")
    parser.add_argument("--max-trials", type=int, help="at most this many trials (default: the whole grid; "
                                                       "10 for bayesian and random)")
    parser.add_argument("--epochs", type=int, help="override the space's epochs per trial")
    parser.add_argument("--seed", type=int, default=42, help="seed for the split, weights and trial order")
    parser.add_argument("--init-seed", type=int, metavar="N",
                        help="seed for the weights, shuffling and augmentation only (default: --seed); vary it to "
                             "train ensemble members on the same validation split")
    parser.add_argument("--project-dir", type=Path, default=Path("runs"), help="where runs live (default runs/)")
    parser.add_argument("--name", help="run name (default SPACE-STRATEGY)")
    parser.add_data_arguments()
    parser.add_argument("--exports-dir", type=Path, default=Path("exports"),
                        help="where the verified ONNX model and model card go (default exports/)")
    parser.add_argument("--no-export", action="store_true", help="skip the ONNX export of the winner")
    parser.add_argument("--quantize", action="store_true",
                        help="also write an int8 copy of the export (NAME-int8.onnx), verified against Keras")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing run of this name first")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and a cost estimate, train nothing")
    parser.add_argument("--prune", choices=("median", "none"),
                        help="stop hopeless trials by the median rule (default: the space's [pruning], else median)")
    parser.add_argument("--prune-warmup", type=int, metavar="EPOCHS", help="epochs before pruning may start")
    parser.add_argument("--prune-min-trials", type=int, metavar="N", help="trials to compare with before pruning")
    parser.add_argument("--tensorboard", action="store_true",
                        help="write TensorBoard logs with hyperparameters to RUN_DIR/tensorboard")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    parser.add_argument("--teacher", type=Path, metavar="MODEL.onnx",
                        help="distil: train towards this exported model's probabilities blended with the labels "
                             "(e.g. an ensemble from `python -m kmnist_search.ensemble`)")
    parser.add_argument("--teacher-weight", type=float, default=DEFAULT_TEACHER_WEIGHT, metavar="W",
                        help=f"the teacher's share of each training target (default {DEFAULT_TEACHER_WEIGHT})")
    parser.add_argument("--teacher-temperature", type=float, default=DEFAULT_TEACHER_TEMPERATURE, metavar="T",
                        help=f"soften the teacher's probabilities (default {DEFAULT_TEACHER_TEMPERATURE}; 1: as is)")
    parser.add_argument("--role", choices=ROLES, help="distributed search: the chief serves the oracle and "
                                                      "finishes the run; workers run trials (see README)")
    parser.add_argument("--oracle", default=DEFAULT_ORACLE, metavar="HOST:PORT",
                        help=f"where the chief listens and workers connect (default {DEFAULT_ORACLE}; the "
                             "channel is unauthenticated)")
    parser.add_argument("--worker-id", help="a worker's unique name; reuse it to resume after a crash")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_trials is not None and args.max_trials < 1:
        raise RunError(f"--max-trials {args.max_trials}: must be at least 1")
    if args.quantize and args.no_export:
        raise RunError("--quantize quantizes the export: drop --no-export, or quantize later with "
                       "`python -m kmnist_search.quantize exports/NAME.json --name NAME-int8`")
    space = load_space(args.space)
    if args.epochs is not None:
        space = space.with_epochs(args.epochs)
    space = space.with_pruning(args.prune, args.prune_warmup, args.prune_min_trials)
    if args.role:
        configure_distribution(args.role, args.oracle, args.worker_id)
    name = args.name or f"{space.name}-{args.strategy}"
    if args.dry_run:
        train_pool = 60000 - space.validation_images
        print(describe_plan(space, args.strategy, args.max_trials, train_pool))
        return 0
    # Check every input before TensorFlow loads, so mistakes are reported at once.
    dataset = load_dataset(args.dataset, args.data_dir, args.cache_dir, verify_checksums=not args.no_checksum)
    teacher = (load_teacher(args.teacher, args.teacher_weight, args.teacher_temperature, dataset.spec)
               if args.teacher else None)

    quiet_tensorflow_logs()
    from kmnist_search.search import SearchOptions, run_search

    options = SearchOptions(strategy=args.strategy, project_dir=args.project_dir, name=name, seed=args.seed,
                            max_trials=args.max_trials, overwrite=args.overwrite, verbose=0 if args.quiet else 1,
                            tensorboard=args.tensorboard, teacher=teacher,
                            init_seed=args.init_seed)
    results = run_search(dataset, space, options)
    if results is None:
        print(f"worker {tuner_id()} finished: the chief evaluates the winner and writes "
              f"{options.project_dir / name / 'results.json'}")
        return 0
    run_dir = Path(results["run_dir"])
    if not args.no_export:
        from kmnist_search.export import describe_export, export_winner

        card = export_winner(run_dir, dataset, args.exports_dir, name)
        print(describe_export(card, args.exports_dir))
        if args.quantize:
            from kmnist_search.quantize import describe_quantized, export_quantized

            int8 = export_quantized(args.exports_dir / f"{name}.json", dataset, args.exports_dir, f"{name}-int8")
            print(describe_quantized(int8, args.exports_dir))
    from kmnist_search.summary import summarise

    print()
    print(summarise(run_dir))
    print(f"results: {run_dir / 'results.json'}")
    return 0


def cli() -> None:
    """Console-script entry point (``kmnist-search``)."""
    run_main(main)


if __name__ == "__main__":
    cli()
