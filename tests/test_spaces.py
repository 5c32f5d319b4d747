"""Search-space files: the built-in spaces and every way a file can be wrong."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest
import tomllib

from kmnist_search.base.errors import SpaceError
from kmnist_search.data.spaces import BUILTIN_DIR, Pruning, builtin_space_names, load_space, parse_space
from tests.cli import TINY_SPACE
from tests.conftest import EXPORT_NETWORK

VALID = TINY_SPACE.replace("batch_size = [64]", "batch_size = [32]").replace("train_images = 400\n", "")


def test_report_space_is_the_study_exactly() -> None:
    space = load_space("report")
    assert space.learning_rates == (0.1, 0.01, 0.001, 0.0001)
    assert space.batch_sizes == (8, 16, 32, 64, 128)
    assert space.losses == ("categorical_crossentropy", "mean_squared_error")
    assert (space.optimizer, space.epochs, space.train_images) == ("adadelta", 12, None)
    assert space.num_configurations == 40 == len({tuple(c.items()) for c in space.configurations()})


def test_quick_space_is_small() -> None:
    space = load_space("quick")
    assert space.num_configurations <= 4 and space.epochs <= 3 and space.train_images == 10000


def test_every_builtin_space_loads() -> None:
    small = load_space("report-small")
    assert small.values() == load_space("report").values() and small.epochs == 12 and small.train_images == 2000
    assert small.fixed_value("cutout") == 0.0
    for path in sorted(BUILTIN_DIR.glob("*.toml")):
        assert load_space(path.stem).name == path.stem


def test_user_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(VALID)
    space = load_space(str(path))
    assert space.name == "tiny" and space.source == str(path)
    assert space.configurations() == [
        {"learning_rate": 1.0, "batch_size": 32, "loss": "categorical_crossentropy", **EXPORT_NETWORK},
        {"learning_rate": 0.1, "batch_size": 32, "loss": "categorical_crossentropy", **EXPORT_NETWORK},
    ]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("epochs = 1", "epochs = 1\nepochz = 3"), r"unknown key \[training\]\.epochz"),
        (("loss = [", "dropout = [0.5]\nloss = ["), r"unknown key \[hyperparameters\]\.dropout"),
        (('"categorical_crossentropy"]', '"hinge"]'), r"\[hyperparameters\]\.loss has invalid value 'hinge'"),
        (("batch_size = [32]", "batch_size = []"), r"\[hyperparameters\]\.batch_size is an empty list"),
        (("batch_size = [32]", "batch_size = [0]"), r"batch_size has invalid value 0: expected a whole number from 1"),
        (("[1.0, 0.1]", "[-0.1]"), r"learning_rate has invalid value -0.1: expected a positive number"),
        (("[1.0, 0.1]", '["fast"]'), r"learning_rate has invalid value 'fast'"),
        (("[1.0, 0.1]", "[nan]"), r"learning_rate has invalid value nan"),
        (("[1.0, 0.1]", "[0.1, 0.1]"), r"learning_rate lists a value twice"),
        (("epochs = 1", "epochs = 0"), r"\[training\]\.epochs = 0: expected a whole number >= 1"),
        (("epochs = 1", ""), r"\[training\]\.epochs is missing"),
        (("batch_size = [32]\n", ""), r"\[hyperparameters\]\.batch_size is missing"),
        (("epochs = 1", "epochs = 1\ntrain_images = 16"), r"train_images = 16 is smaller than the largest batch"),
        (("loss = [", "cutout = [1.5]\nloss = ["), r"cutout has invalid value 1.5: expected a probability in \[0, 1\)"),
        (("loss = [", '"odd\\nkey" = [1]\nloss = ['), r"unknown key \[hyperparameters\]\.'odd\\nkey'"),
        (("loss = [", "mixup = [-0.2]\nloss = ["), r"mixup has invalid value -0.2: expected a mixup alpha in \[0, 1\)"),
    ],
)
def test_invalid_files_name_file_key_and_problem(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(VALID.replace(*edit, 1))
    with pytest.raises(SpaceError, match=message) as error:
        load_space(str(path))
    assert str(path) in str(error.value)


def test_malformed_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[hyperparameters\nlearning_rate = ")
    with pytest.raises(SpaceError, match="malformed TOML"):
        load_space(str(path))


def test_missing_table_and_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=r"the \[training\] table is missing"):
        parse_space({"hyperparameters": {"learning_rate": [1], "batch_size": [8], "loss": ["mean_squared_error"]}})
    with pytest.raises(SpaceError, match="unknown search space 'nope'"):
        load_space("nope")
    with pytest.raises(SpaceError, match="does not exist"):
        load_space(str(tmp_path / "absent.toml"))


def test_epochs_override() -> None:
    assert load_space("quick").with_epochs(1).epochs == 1
    with pytest.raises(SpaceError, match="--epochs 0"):
        load_space("quick").with_epochs(0)


def test_space_descriptions_leave_durations_to_the_dry_run() -> None:
    """The dry run's estimate is the one figure a person reads for how long a space takes."""
    import re

    for name in builtin_space_names():
        description = load_space(name).description
        assert not re.search(r"\d+(\.\d+)?\s*(h|hours?|min|minutes?)\b", description), (name, description)


def test_residual_depths_must_be_six_n_plus_two() -> None:
    document = {"name": "r", "training": {"epochs": 1},
                "hyperparameters": {"learning_rate": [0.1], "batch_size": [8], "loss": ["mean_squared_error"],
                                    "network": "preact_resnet", "resnet_depth": [20, 10]}}
    with pytest.raises(SpaceError, match=r"resnet_depth has invalid value 10: expected a depth 6n \+ 2"):
        parse_space(document)


def test_the_cost_model_prices_networks_by_their_multiply_adds_and_element_wise_passes() -> None:
    from kmnist_search.search.plan import estimate_epoch_seconds

    space = load_space("resnet")
    study = load_space("report")
    cnn = estimate_epoch_seconds(study, {**study.configurations()[0], "batch_size": 128}, 54000)
    def cost(depth: int, width: int) -> float:
        return estimate_epoch_seconds(space, {**space.configurations()[0], "resnet_depth": depth,
                                              "resnet_width": width}, 54000)

    assert cnn < cost(20, 16) and 120 < cost(20, 16) < 260  # ResNet-20: about 3 min here
    # Relative to ResNet-20 of width 16, as benchmarks/residual_epoch_cost.py measured them side by side:
    # a wider, shallower network costs less per multiply-add (fewer element-wise passes).
    for (depth, width), measured in {(8, 16): 0.39, (14, 16): 0.69, (8, 24): 0.60, (14, 24): 1.16}.items():
        assert cost(depth, width) / cost(20, 16) == pytest.approx(measured, rel=0.1), (depth, width)


def test_every_hyperparameter_is_documented() -> None:
    from pathlib import Path

    from kmnist_search.data.spaces import HYPERPARAMETERS

    page = (Path(__file__).resolve().parents[1] / "docs" / "search-spaces.md").read_text(encoding="utf-8")
    assert [name for name in HYPERPARAMETERS if f"`{name}`" not in page] == []


def test_a_space_s_source_never_shows_the_machine_s_install_path(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_space("quick").source == "search_spaces/quick.toml"
    assert load_space(str(BUILTIN_DIR / "report.toml")).source == "search_spaces/report.toml"
    (tmp_path / "mine.toml").write_text(VALID)
    assert load_space(str(tmp_path / "mine.toml")).source == str(tmp_path / "mine.toml")  # as the user gave it


def test_the_documented_pruning_defaults_are_the_defaults() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "search-spaces.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(\[pruning\] +# optional; these are the defaults\n.*?)```", page, re.S)
    assert block is not None
    documented = tomllib.loads(block.group(1))["pruning"]
    assert documented.keys() == asdict(Pruning()).keys()
    assert Pruning(**documented).record() == Pruning().record()
