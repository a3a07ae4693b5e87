"""The metric losses train through `model.fit(jit_compile=True)` and save."""

import keras
import numpy as np
import pytest

import data_utils
from keras_margin import losses

NUM_CLASSES, INPUT_DIM = 5, 8


def clustered_data(seed=0, per_class=40):
    return data_utils.clustered_data(NUM_CLASSES, INPUT_DIM, per_class, spread=2.0, seed=seed)


def embedder():
    inputs = keras.Input((INPUT_DIM,))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4)(hidden))


LOSSES = {
    "contrastive": lambda: losses.ContrastiveLoss(margin=1.0),
    "contrastive_cosine": lambda: losses.ContrastiveLoss(margin=0.5, distance="cosine"),
    **{f"triplet_{m}": (lambda m=m: losses.TripletLoss(mining=m)) for m in ("semi_hard", "batch_hard", "batch_all")},
    "triplet_soft_euclidean": lambda: losses.TripletLoss(mining="batch_hard", distance="euclidean", soft=True),
}


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_trains_under_xla(name, policy):
    keras.config.set_dtype_policy(policy)
    x, y = clustered_data()
    model = embedder()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=LOSSES[name](), jit_compile=True)
    history = model.fit(x, y, batch_size=50, epochs=10, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)), history
    assert history[-1] < 0.7 * history[0], history
    # nearest class mean in the learned space recovers the classes
    emb = model.predict(x, verbose=0).astype("float64")
    if "cosine" in name or "triplet" in name:
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    means = np.stack([emb[y == c].mean(axis=0) for c in range(NUM_CLASSES)])
    nearest = np.argmin(((emb[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == y) > 0.8  # chance is 0.2; the clusters overlap a little


def test_softmax_plus_contrastive_joint_model_logs_both_terms():
    x, y = clustered_data()
    inputs = keras.Input((INPUT_DIM,))
    embeddings = keras.layers.Dense(4, name="embedding")(keras.layers.Dense(32, activation="relu")(inputs))
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(embeddings)
    model = keras.Model(inputs, {"logits": logits, "embedding": embeddings})
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "embedding": losses.ContrastiveLoss()},
        loss_weights={"logits": 1.0, "embedding": 0.5},
        jit_compile=True,
    )
    history = model.fit(x, {"logits": y, "embedding": y}, batch_size=50, epochs=8, verbose=0).history
    assert {"loss", "logits_loss", "embedding_loss"} <= set(history)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["logits_loss"][-1] < 0.5 * history["logits_loss"][0]
    # the two objectives compete (softmax spreads the embeddings); both stay finite
    assert np.all(np.isfinite(history["embedding_loss"]))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_round_trips_through_keras_file(tmp_path, name):
    x, y = clustered_data(per_class=4)
    model = embedder()
    loss = LOSSES[name]()
    model.compile(optimizer="adam", loss=loss)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    restored_loss = restored.loss
    assert type(restored_loss) is type(loss)
    assert restored_loss.get_config() == loss.get_config()
    emb = model.predict(x, verbose=0)
    assert float(restored_loss(y, emb)) == pytest.approx(float(loss(y, emb)), rel=1e-6)


@pytest.mark.parametrize("make,argument", [
    (lambda: losses.ContrastiveLoss(margin=0.0), "margin"),
    (lambda: losses.ContrastiveLoss(distance="manhattan"), "distance"),
    (lambda: losses.TripletLoss(margin=-0.1), "margin"),
    (lambda: losses.TripletLoss(mining="hardest"), "mining"),
    (lambda: losses.TripletLoss(distance="l1"), "distance"),
    (lambda: losses.TripletLoss(normalize="yes"), "normalize"),
    (lambda: losses.TripletLoss(reduction="none"), "reduction"),
    (lambda: losses.ContrastiveLoss(reduction=None), "reduction"),
    (lambda: losses.triplet_loss(np.array([0, 1]), np.ones((2, 3), "float32"), reduction="none"), "reduction"),
    (lambda: losses.batch_contrastive_loss(np.array([0, 1]), np.ones((2, 3), "float32"), reduction="avg"), "reduction"),
])
def test_bad_loss_arguments(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_bad_loss_inputs():
    with pytest.raises(ValueError, match="same batch size"):
        losses.TripletLoss()(np.array([0, 1, 2]), np.ones((4, 3), "float32"))
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        losses.ContrastiveLoss()(np.array([0, 1]), np.ones((2, 3, 1), "float32"))
