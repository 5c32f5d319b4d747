"""The study's CNN and the HyperModel, smoke-tested on random images before any search."""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest

from kmnist_search.data.spaces import load_space
from kmnist_search.search.hypermodel import (
    KmnistHyperModel,
    build_network,
    fail_on_non_finite_loss,
    search_hyperparameters,
    to_model_input,
)
from kmnist_search.search.resume import epoch_batches


def test_cnn_is_the_study_architecture() -> None:
    model = build_network(num_classes=10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Rescaling", "Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten",
                     "Dense", "Dropout", "Dense"]
    assert model.count_params() == 1_199_882  # the Keras MNIST example's parameter count
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.25, 0.5]
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)


def test_model_scales_raw_pixels_itself(seeded: None) -> None:
    model = build_network()
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    probabilities = model(to_model_input(images).astype("float32"), training=False).numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    scaled = model.layers[1](to_model_input(images).astype("float32")).numpy()
    assert scaled.max() <= 1.0 and scaled.max() > 0.5


def test_hypermodel_build_and_fit_use_the_trial_values(seeded: None) -> None:
    space = load_space("report")
    hp = search_hyperparameters(space)
    assert [p.name for p in hp.space] == ["learning_rate", "batch_size", "loss"]
    hp.values.update({"learning_rate": 0.01, "batch_size": 16, "loss": "mean_squared_error"})
    hypermodel = KmnistHyperModel(space, num_classes=10)
    model = hypermodel.build(hp)
    assert model.loss == "mean_squared_error"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    images = to_model_input(np.random.default_rng(1).integers(0, 256, (48, 28, 28), dtype=np.uint8))
    labels = keras.utils.to_categorical(np.arange(48) % 10, 10)
    history = hypermodel.fit(hp, model, images, labels, epochs=1)
    assert model.optimizer.iterations.numpy() == 3  # 48 images / batch_size 16
    assert np.isfinite(history.history["loss"][0])


def test_diverging_loss_fails_the_trial() -> None:
    history = keras.callbacks.History()
    history.history = {"loss": [2.3, float("nan")]}
    with pytest.raises(kt.errors.FailedTrialError, match="loss became nan at epoch 2"):
        fail_on_non_finite_loss(history)
    history.history = {"loss": [2.3, 1.9]}
    fail_on_non_finite_loss(history)


def test_extended_architecture_knobs() -> None:
    from kmnist_search.search.hypermodel import Architecture

    model = build_network(architecture=Architecture(conv_layers="32-32-p-64-64", batch_norm=True, dense_units=256,
                                                augment=0.1, cutout=0.5), optimizer="adam", learning_rate=0.001)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 4 and kinds.count("BatchNormalization") == 4
    assert kinds.count("MaxPooling2D") == 2
    assert kinds[2:6] == ["RandomRotation", "RandomTranslation", "RandomZoom", "RandomErasing"]
    assert model.get_layer("dense256").units == 256
    images = np.full((2, 28, 28, 1), 128.0, np.float32)
    assert np.allclose(model(images, training=False), model(images, training=False))  # no augmentation at inference
    erasing = model.get_layer("augment_erasing")
    scaled = np.ones((64, 28, 28, 1), np.float32)
    erased = np.asarray(erasing(scaled, training=True))
    assert 0 < int((erased.reshape(64, -1).min(axis=1) == 0).sum()) < 64  # some training images lose a patch
    assert np.array_equal(np.asarray(erasing(scaled, training=False)), scaled)


def test_mixup_blends_images_and_labels_by_one_weight_per_batch(seeded: None) -> None:
    images = np.stack([np.full((28, 28, 1), 10 * k, np.uint8) for k in range(10)])  # image k is all 10k
    labels = keras.utils.to_categorical(np.arange(10), 10)
    dataset, order = epoch_batches(images, labels, batch_size=5, seed=3, mixup_alpha=0.4)
    order.on_epoch_begin(0)
    batches = list(dataset)
    assert [len(batch_images) for batch_images, _ in batches] == [5, 5]
    seen = set()
    for batch_images, batch_labels in batches:
        batch_images, batch_labels = np.asarray(batch_images), np.asarray(batch_labels)
        assert batch_images.dtype == np.float32 and batch_labels.shape == (5, 10)
        assert np.allclose(batch_labels.sum(axis=1), 1.0)
        # each mixed image is the label-weighted blend of the two images it came from
        assert np.allclose(batch_images[:, 0, 0, 0], batch_labels @ (10.0 * np.arange(10)), atol=1e-3)
        weights = np.sort(batch_labels, axis=1)[:, -2:]
        mixed = weights[:, 0] > 1e-6
        assert np.allclose(weights[mixed].sum(axis=1), 1.0) and len(np.unique(np.round(weights[mixed, 1], 5))) <= 1
        seen |= {int(k) for k in np.flatnonzero(batch_labels.sum(axis=0))}
    assert seen == set(range(10))  # every image is used in an epoch


@pytest.mark.slow
def test_mixup_trains_through_the_hypermodel(seeded: None) -> None:
    from kmnist_search.data.spaces import parse_space

    space = parse_space({"hyperparameters": {"batch_size": [16], "loss": ["categorical_crossentropy"],
                                             "learning_rate": [1.0], "mixup": [0.2]}, "training": {"epochs": 1}})
    hp = search_hyperparameters(space)
    hypermodel = KmnistHyperModel(space, num_classes=10)
    model = hypermodel.build(hp)
    images = to_model_input(np.random.default_rng(1).integers(0, 256, (48, 28, 28), dtype=np.uint8))
    labels = keras.utils.to_categorical(np.arange(48) % 10, 10)
    history = hypermodel.fit(hp, model, images, labels, validation_data=(images, labels), epochs=2)
    assert model.optimizer.iterations.numpy() == 6  # 2 epochs x 48 images / batch_size 16
    assert np.isfinite(history.history["loss"]).all() and len(history.history["val_accuracy"]) == 2


def test_unsearched_learning_rate_follows_the_optimizer() -> None:
    from kmnist_search.data.spaces import parse_space

    space = parse_space({"hyperparameters": {"optimizer": ["adam", "adadelta"], "batch_size": [8],
                                             "loss": ["categorical_crossentropy"]}, "training": {"epochs": 1}})
    hypermodel = KmnistHyperModel(space, num_classes=10)
    for optimizer, rate in (("adam", 0.001), ("adadelta", 1.0)):
        hp = search_hyperparameters(space)
        hp.values["optimizer"] = optimizer
        model = hypermodel.build(hp)
        assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(rate)


def test_each_epoch_is_shuffled_by_seed_and_epoch_alone() -> None:
    images = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1)
    labels = keras.utils.to_categorical(np.arange(12) % 10, 10)

    def epoch_order(seed: int, epoch: int) -> list[int]:
        dataset, order = epoch_batches(images, labels, batch_size=5, seed=seed)
        order.on_epoch_begin(epoch)
        return [int(v) for batch, _ in dataset for v in np.asarray(batch).ravel()]

    first = epoch_order(1, 3)
    assert sorted(first) == list(range(12)) and first == epoch_order(1, 3)  # every image, once, reproducibly
    assert first != epoch_order(1, 4) and first != epoch_order(2, 3)


def test_the_residual_network_is_a_pre_activation_resnet() -> None:
    from kmnist_search.search.hypermodel import Architecture

    model = build_network(architecture=Architecture(network="preact_resnet", resnet_depth=20, resnet_width=16))
    assert model.count_params() == 273_370  # ResNet-20 for CIFAR-sized images: about 0.27 million weights
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Add") == 9 and kinds.count("Conv2D") == 21 and "GlobalAveragePooling2D" in kinds
    assert kinds[2:5] == ["Conv2D", "BatchNormalization", "Activation"]  # stem, then the first block's BN-ReLU
    assert model.output_shape == (None, 10)


def test_warm_up_then_cosine() -> None:
    from kmnist_search.search.hypermodel import learning_rate_schedule

    schedule = learning_rate_schedule(0.1, epochs=6, warmup_epochs=2).schedule
    rates = [schedule(epoch) for epoch in range(6)]
    assert rates[:3] == pytest.approx([0.05, 0.1, 0.1]) and rates[3] < rates[2] and rates[5] < 0.02
    held = learning_rate_schedule(0.1, epochs=6, warmup_epochs=2, cosine=False).schedule
    assert [held(epoch) for epoch in range(4)] == pytest.approx([0.05, 0.1, 0.1, 0.1])
