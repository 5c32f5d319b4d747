"""Property-based tests (hypothesis): the space parser and inference image preprocessing."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from kmnist_search.base.errors import SpaceError
from kmnist_search.data.spaces import LOSSES, parse_space
from kmnist_search.export.inference import prepare_image

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 300), st.floats(allow_nan=True),
                    st.text(max_size=8))
values = st.one_of(scalars, st.lists(scalars, max_size=4))


@st.composite
def space_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed space documents with random corruption here and there."""
    hyper = {
        "learning_rate": draw(st.one_of(st.lists(st.floats(1e-5, 10), min_size=1, max_size=3, unique=True), values)),
        "batch_size": draw(st.one_of(st.lists(st.integers(1, 256), min_size=1, max_size=3, unique=True), values)),
        "loss": draw(st.one_of(st.lists(st.sampled_from(LOSSES), min_size=1, max_size=2, unique=True), values)),
    }
    if draw(st.booleans()):
        hyper[draw(st.text(min_size=1, max_size=6))] = draw(values)
    training = {"epochs": draw(st.one_of(st.integers(-2, 20), scalars)),
                "validation_images": draw(st.one_of(st.integers(1, 10000), scalars))}
    document: dict[str, Any] = {"name": "p", "hyperparameters": hyper, "training": training}
    if draw(st.booleans()):
        document.pop(draw(st.sampled_from(["hyperparameters", "training"])))
    return document


@settings(max_examples=300, deadline=None)
@given(space_documents())
def test_parser_accepts_valid_spaces_and_rejects_the_rest_cleanly(document: dict[str, Any]) -> None:
    try:
        space = parse_space(document, source="prop.toml")
    except SpaceError as error:
        message = str(error)
        assert message.startswith("search space prop.toml: ") and "\n" not in message
        return
    assert space.num_configurations == len(space.configurations()) >= 1
    assert all(rate > 0 for rate in space.learning_rates) and all(b > 0 for b in space.batch_sizes)
    assert set(space.losses) <= set(LOSSES) and space.epochs >= 1
    assert parse_space({"name": space.name, "hyperparameters": {
        "learning_rate": list(space.learning_rates), "batch_size": list(space.batch_sizes),
        "loss": list(space.losses)}, "training": {"epochs": space.epochs,
                                                  "validation_images": space.validation_images}}) == \
        parse_space(document)


@settings(max_examples=150, deadline=None)
@given(width=st.integers(1, 120), height=st.integers(1, 120), mode=st.sampled_from(["L", "RGB", "RGBA", "P", "1",
       "I", "LA"]), seed=st.integers(0, 2**16))
def test_any_image_becomes_28x28_uint8_with_honest_notes(width: int, height: int, mode: str, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    array, notes = prepare_image(image)
    assert array.shape == (28, 28) and array.dtype == np.uint8
    assert (mode != "L") == any(note.startswith("converted") for note in notes)
    framed = (width, height) != (28, 28)
    assert framed == any(note.startswith("resized") for note in notes)
    if framed and array.max() > 0:  # the character, cropped to its ink, fills the frame along one side
        rows, columns = np.nonzero(array)
        assert max(rows.max() - rows.min(), columns.max() - columns.min()) + 1 >= 27
    elif any(note.startswith("inverted") for note in notes):
        assert array.mean() < 128
