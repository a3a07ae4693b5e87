"""Each head trains through `model.fit(jit_compile=True)` on a learnable task."""

import keras
import numpy as np
import pytest

import data_utils
from keras_margin import layers

NUM_CLASSES, INPUT_DIM = 6, 10

HEADS = {
    "arc": lambda: layers.ArcMarginHead(NUM_CLASSES, scale=16.0, margin=0.3),
    "arc_detached": lambda: layers.ArcMarginHead(NUM_CLASSES, scale=16.0, margin=0.3, gradient="detached"),
    "cos": lambda: layers.CosMarginHead(NUM_CLASSES, scale=16.0, margin=0.2),
    "combined": lambda: layers.CombinedMarginHead(NUM_CLASSES, scale=16.0, m1=1.0, m2=0.2, m3=0.1),
    "sphere": lambda: layers.SphereMarginHead(NUM_CLASSES, margin=4),
    "large": lambda: layers.LargeMarginHead(NUM_CLASSES, margin=2),
    "arc_subcenters": lambda: layers.ArcMarginHead(NUM_CLASSES, scale=16.0, margin=0.3, num_subcenters=2),
    "arc_auto_warmup": lambda: layers.ArcMarginHead(NUM_CLASSES, scale="auto", margin=0.3, margin_warmup_steps=20),
    "cos_adaptive": lambda: layers.CosMarginHead(NUM_CLASSES, scale="adaptive", margin=0.2),
}


def clustered_data(seed=0, per_class=64):
    return data_utils.clustered_data(NUM_CLASSES, INPUT_DIM, per_class, spread=3.0, seed=seed)


def training_and_inference_models(head):
    features = keras.Input((INPUT_DIM,), name="features")
    labels = keras.Input((), dtype="int32", name="labels")
    hidden = keras.layers.Dense(32, activation="relu")(features)
    embeddings = keras.layers.Dense(8, name="embedding")(hidden)
    train_model = keras.Model([features, labels], head(embeddings, labels=labels))
    predict_model = keras.Model(features, head(embeddings))
    return train_model, predict_model


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_trains_under_xla(name, policy):
    keras.config.set_dtype_policy(policy)
    x, y = clustered_data()
    head = HEADS[name]()
    train_model, predict_model = training_and_inference_models(head)
    train_model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = train_model.fit([x, y], y, batch_size=32, epochs=12, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), losses
    if name != "cos_adaptive":  # the adaptive scale shrinks as classes separate, and so does the loss's range
        assert losses[-1] < 0.5 * losses[0], losses

    plain_logits = predict_model.predict(x, batch_size=64, verbose=0)
    assert plain_logits.dtype == np.float32
    accuracy = np.mean(np.argmax(plain_logits, axis=1) == y)
    assert accuracy > 0.95, accuracy


def test_annealing_counter_counts_fit_steps_only():
    x, y = clustered_data(per_class=20)  # 120 samples → 4 steps of 32 per epoch
    head = layers.SphereMarginHead(NUM_CLASSES)
    train_model, predict_model = training_and_inference_models(head)
    train_model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    train_model.fit([x, y], y, batch_size=32, epochs=3, verbose=0)
    assert int(head.annealing_step.numpy()) == 12
    train_model.evaluate([x, y], y, batch_size=32, verbose=0)
    train_model.predict([x, y], batch_size=32, verbose=0)
    predict_model.predict(x, batch_size=32, verbose=0)
    assert int(head.annealing_step.numpy()) == 12
    assert head.current_lambda == pytest.approx(max(5.0, 1000.0 / (1 + 0.12 * 12)), rel=1e-6)
