"""``python -m kmnist_search.run --strategy grid --space quick``: the main job.

Searches the space with Keras Tuner, evaluates the winner once on the test set, exports it to ONNX
(verified with onnxruntime on every test image) and writes the report. Rerunning the same command
resumes an interrupted search; a finished one is reported as it is (``--overwrite`` starts afresh).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from kmnist_search import pipeline
from kmnist_search.base.errors import RunError
from kmnist_search.base.files import check_writable_directory
from kmnist_search.base.formatting import percent, trial_number
from kmnist_search.base.names import check_name, check_seed
from kmnist_search.commands.common import OneLineArgumentParser, print_safely, program, run_main
from kmnist_search.commands.tensorflow_start import load_tensorflow_quietly
from kmnist_search.pipeline import (
    DATA_DIR_ENV,
    DEFAULT_CONFIRM,
    DEFAULT_ORACLE,
    DEFAULT_TEACHER_TEMPERATURE,
    DEFAULT_TEACHER_WEIGHT,
    PRUNERS,
    ROLES,
    RUNS_PER_CONFIGURATION,
    STRATEGIES,
    builtin_space_names,
    configure_distribution,
    current_role,
    describe_plan,
    get_spec,
    load_dataset,
    load_space,
    load_teacher,
    tuner_id,
)

DEFAULT_SPACE = "report"


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog=program("run"),
        description="Search the study's CNN hyperparameters on KMNIST with Keras Tuner, evaluate the winner "
                    "once on the test set, and export it to ONNX.",
    )
    parser.add_argument("--strategy", choices=STRATEGIES, default="grid", help="search strategy (default grid)")
    parser.add_argument("--space", default=DEFAULT_SPACE,
                        help=f"built-in space name ({', '.join(builtin_space_names())}) or a .toml path "
                             f"(default {DEFAULT_SPACE})")
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
    parser.add_argument("--overwrite", action="store_true",
                        help="delete an existing run of this name first (a finished run is otherwise left as it is)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and a cost estimate, train nothing")
    parser.add_argument("--prune", choices=PRUNERS,
                        help="how hopeless trials are stopped (default: the space's [pruning], else catch-up; the "
                             "rules and what they cost in docs/pruning.md)")
    parser.add_argument("--prune-warmup", type=int, metavar="EPOCHS",
                        help="epochs before a trial's own curve may stop it")
    parser.add_argument("--prune-min-trials", type=int, metavar="N", help="trials to compare with before pruning")
    parser.add_argument("--confirm", type=int, default=DEFAULT_CONFIRM, metavar="K",
                        help=f"after the search, train the K best configurations until each has "
                             f"{RUNS_PER_CONFIGURATION} runs with different seeds; the winner is the best mean "
                             f"(default {DEFAULT_CONFIRM}: off; cost in the README)")
    parser.add_argument("--budget-ms", type=float, metavar="MS",
                        help="the winner is the most accurate trial whose shipped ONNX model takes at most MS "
                             "milliseconds per image with onnxruntime (measured per trial; docs/outputs.md)")
    parser.add_argument("--budget-mb", type=float, metavar="MB",
                        help="... and whose ONNX file is at most MB megabytes (int8's with --quantize)")
    parser.add_argument("--no-measure", action="store_true",
                        help="do not export and time each completed trial (a few seconds each); no budget then")
    parser.add_argument("--deterministic", action="store_true",
                        help="TensorFlow's op determinism: the same seeds train the same weights, run after run "
                             "(cost in BENCHMARKS.md)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="write TensorBoard logs with hyperparameters to RUN_DIR/tensorboard")
    parser.add_argument("--quiet", action="store_true", help="only a line per trial: no epochs, no progress bar")
    parser.add_argument("--teacher", type=Path, metavar="MODEL.onnx",
                        help="distil: train towards this exported model's probabilities blended with the labels "
                             "(e.g. an ensemble from `python -m kmnist_search.ensemble`)")
    parser.add_argument("--teacher-weight", type=float, default=DEFAULT_TEACHER_WEIGHT, metavar="W",
                        help=f"the teacher's share of each training target (default {DEFAULT_TEACHER_WEIGHT})")
    parser.add_argument("--teacher-temperature", type=float, default=DEFAULT_TEACHER_TEMPERATURE, metavar="T",
                        help=f"soften the teacher's probabilities (default {DEFAULT_TEACHER_TEMPERATURE}; 1: as is)")
    parser.add_argument("--role", choices=ROLES, help="distributed search: the chief serves the oracle and "
                                                      "finishes the run; workers run trials (see docs/distributed.md)")
    parser.add_argument("--oracle", metavar="HOST:PORT",
                        help=f"where the chief listens and workers connect (default {DEFAULT_ORACLE}; the "
                             "channel is unauthenticated)")
    parser.add_argument("--worker-id", help="a worker's unique name; reuse it to resume after a crash")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_trials is not None and args.max_trials < 1:
        raise RunError(f"--max-trials {args.max_trials}: must be at least 1")
    if args.confirm < 0:
        raise RunError(f"--confirm {args.confirm}: must be 0 (off) or more configurations to confirm")
    if args.no_measure and (args.budget_ms is not None or args.budget_mb is not None):
        raise RunError("a budget needs every trial measured: drop --no-measure, or drop --budget-ms/--budget-mb")
    pipeline.deployment_budget(args.budget_ms, args.budget_mb)  # checked before anything loads
    if args.quantize and args.no_export:
        raise RunError("--quantize quantizes the export: drop --no-export, or quantize later with "
                       "`python -m kmnist_search.quantize exports/NAME.json --name NAME-int8`")
    space = load_space(args.space)
    if args.epochs is not None:
        space = space.with_epochs(args.epochs)
    space = space.with_pruning(args.prune, args.prune_warmup, args.prune_min_trials)
    if args.role:
        configure_distribution(args.role, args.oracle or DEFAULT_ORACLE, args.worker_id)
    elif args.oracle or args.worker_id:
        raise RunError(f"{'--oracle' if args.oracle else '--worker-id'} is for a distributed search: add "
                       f"--role chief or --role worker")
    if args.name is not None:
        check_name(args.name, "--name")
    run_dir = pipeline.run_dir_for(space, args.strategy, args.project_dir, args.name)
    name = run_dir.name
    check_seed(args.seed, "--seed")
    if args.init_seed is not None:
        check_seed(args.init_seed, "--init-seed")
    if args.dry_run:
        spec = get_spec(args.dataset)
        print_safely(describe_plan(space, args.strategy, args.max_trials, spec.train_size - space.validation_images))
        return 0
    # Check every input before TensorFlow loads, so mistakes are reported at once.
    if not args.no_export:
        check_writable_directory(args.exports_dir, "--exports-dir")
    if args.data_dir is None and not os.environ.get(DATA_DIR_ENV):
        load_tensorflow_quietly()  # a download loads Keras (its fetcher): quietly, before its first line prints
    dataset = load_dataset(args.dataset, args.data_dir, args.cache_dir, verify_checksums=not args.no_checksum)
    teacher = (load_teacher(args.teacher, args.teacher_weight, args.teacher_temperature, dataset.spec)
               if args.teacher else None)
    load_tensorflow_quietly()
    from kmnist_search.commands.console import ConsoleProgress

    search_options = {"project_dir": args.project_dir, "name": name, "seed": args.seed, "init_seed": args.init_seed,
                      "max_trials": args.max_trials, "overwrite": args.overwrite, "tensorboard": args.tensorboard,
                      "deterministic": args.deterministic, "confirm": args.confirm,
                      "teacher": teacher, "measure": False if args.no_measure else None,
                      "measure_int8": args.quantize, "budget_ms": args.budget_ms, "budget_mb": args.budget_mb}
    with ConsoleProgress(quiet=args.quiet) as progress:
        if current_role() == "worker":
            pipeline.search(space, args.strategy, dataset=dataset, progress=progress, **search_options)
            print_safely(f"worker {tuner_id()} finished: the chief evaluates the winner and writes "
                         f"{run_dir.results_path}")
            return 0
        outcome = pipeline.run(space, args.strategy, dataset=dataset, exports_dir=args.exports_dir,
                               export_winner=not args.no_export, quantize_export=args.quantize,
                               on_step=progress.step, progress=progress, **search_options)
    if outcome.search.resumed_finished:
        print_safely(f"run {name} had finished (winner trial {trial_number(outcome.search.winner.trial_id)}, test "
                     f"accuracy {percent(outcome.search.winner.test_accuracy)}): nothing was trained"
                     + ("" if outcome.export else ", and its export is left as it is")
                     + f". Pass --overwrite to search again, or export again with "
                     f"`python -m kmnist_search.export {run_dir.path}`.")
    if outcome.export is not None:
        print_safely(outcome.export.describe())
    if outcome.quantized is not None:
        print_safely(outcome.quantized.describe())
    print_safely("\n" + pipeline.summarise(outcome.search))
    print_safely(f"results: {run_dir.results_path}")
    if outcome.report_path is not None:
        print_safely(f"report: {outcome.report_path}")
    return 0


def cli() -> None:
    """Console-script entry point (``kmnist-search``)."""
    run_main(main)
