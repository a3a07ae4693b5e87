"""Soak: every head and loss, 2,000 steps at aggressive settings, never produces NaN or inf.

Settings are harsher than training needs: s = 64, the papers' largest default
margins, Adam at learning rate 0.05, labels with 20% noise so the margin
keeps pushing, in float32, mixed_float16 and mixed_bfloat16. A callback checks
every loss and weight after each execution (100 steps) and the gradients on a
probe batch. All heads (and all metric losses) train side by side in one model,
each on its own small network, so one XLA compile serves them all. Marked
slow: `python -m pytest -m slow` runs it, the default run does not.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import data_utils
from backend_utils import gradients
import keras_margin
from keras_margin import layers, losses

NUM_CLASSES, INPUT_DIM, BATCH, STEPS, STEPS_PER_EXECUTION = 8, 12, 32, 2000, 100

HEADS = {
    "arc": lambda: layers.ArcMarginHead(NUM_CLASSES, scale=64.0, margin=0.5),
    "cos": lambda: layers.CosMarginHead(NUM_CLASSES, scale=64.0, margin=0.35),
    "combined": lambda: layers.CombinedMarginHead(NUM_CLASSES, scale=64.0, m1=1.0, m2=0.5, m3=0.35),
    "arc_adaptive_warmup": lambda: layers.ArcMarginHead(NUM_CLASSES, scale="adaptive", margin=0.5,
                                                        margin_warmup_steps=500),
    "sphere": lambda: layers.SphereMarginHead(NUM_CLASSES, margin=4),
    "large": lambda: layers.LargeMarginHead(NUM_CLASSES, margin=4),
    "normalized_dense": lambda: layers.NormalizedDense(NUM_CLASSES, scale=64.0),
    "curricular": lambda: layers.CurricularFaceHead(NUM_CLASSES, scale=64.0, margin=0.5),
    "magface": lambda: layers.MagFaceHead(NUM_CLASSES, scale=64.0, lower_norm=1.0, upper_norm=20.0, lambda_g=20.0),
    "adaface": lambda: layers.AdaFaceHead(NUM_CLASSES, scale=64.0, margin=0.4),
    "elastic_arc_plus": lambda: layers.ElasticArcMarginHead(NUM_CLASSES, scale=64.0, sorted_margins=True, seed=0),
    "elastic_cos": lambda: layers.ElasticCosMarginHead(NUM_CLASSES, scale=64.0, margin_std=0.1, seed=0),
}
LOSSES = {
    "contrastive": lambda: losses.ContrastiveLoss(margin=2.0),
    "triplet_semi_hard": lambda: losses.TripletLoss(margin=0.5),
    "triplet_batch_hard": lambda: losses.TripletLoss(margin=0.5, mining="batch_hard", distance="euclidean"),
    "triplet_batch_all": lambda: losses.TripletLoss(margin=0.5, mining="batch_all", soft=True),
}
POLICIES = ["float32", "mixed_float16", "mixed_bfloat16"]
# Keras on PyTorch runs one step per execution; there the callback checks every STEPS_PER_EXECUTION-th step
PER_EXECUTION = 1 if keras.backend.backend() == "torch" else STEPS_PER_EXECUTION


def noisy_data():
    x, y = data_utils.clustered_data(NUM_CLASSES, INPUT_DIM, per_class=32, spread=2.0, seed=0)
    rng = np.random.default_rng(1)
    noisy = rng.random(len(y)) < 0.2
    y[noisy] = rng.integers(0, NUM_CLASSES, noisy.sum())
    return x, y.astype("int32")


class AssertFinite(keras.callbacks.Callback):
    """Fails the run at the first non-finite loss, weight or probe gradient."""

    def __init__(self, probe_inputs, probe_labels, loss_functions, every=1):
        super().__init__()
        self.probe_inputs, self.probe_labels = probe_inputs, probe_labels
        self.loss_functions = loss_functions
        self.every, self.checks = every, 0

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every:  # `batch`: the index of the last step this execution ran
            return
        for key, value in logs.items():
            assert np.isfinite(value), f"{key} = {value} at batch {batch}"
        for weight in self.model.weights:
            assert np.isfinite(np.asarray(weight, dtype=np.float32)).all(), f"{weight.path} at batch {batch}"

        def probe_loss():
            outputs = self.model(self.probe_inputs, training=False)
            return sum(loss(self.probe_labels, keras.ops.cast(output, "float32"))
                       for loss, output in zip(self.loss_functions, outputs))

        weights = self.model.trainable_weights
        for weight, gradient in zip(weights, gradients(probe_loss, variables=weights)):
            assert np.isfinite(np.asarray(gradient, dtype=np.float32)).all(), f"gradient of {weight.path}"
        self.checks += 1


def soak(model, inputs, labels, loss_functions):
    """Fits `model` (one output per loss function) for STEPS steps under XLA, checking as it goes."""
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=list(loss_functions), jit_compile=True,
                  steps_per_execution=PER_EXECUTION)
    probe = (inputs[:BATCH] if not isinstance(inputs, list) else [i[:BATCH] for i in inputs]), labels[:BATCH]
    check = AssertFinite(*probe, loss_functions, every=STEPS_PER_EXECUTION // PER_EXECUTION)
    targets = tuple([labels] * len(loss_functions))
    dataset = tf.data.Dataset.from_tensor_slices((tuple(inputs) if isinstance(inputs, list) else inputs, targets))
    dataset = dataset.shuffle(256, seed=0).repeat().batch(BATCH, drop_remainder=True)
    model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=0, callbacks=[check])
    assert check.checks == STEPS // STEPS_PER_EXECUTION


def own_backbone(features, name):
    """A separate small network per head or loss, so one model soaks them all independently."""
    hidden = keras.layers.Dense(32, activation="relu", name=f"{name}_hidden")(features)
    return keras.layers.Dense(16, name=f"{name}_embedding")(hidden)


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
def test_heads_soak(policy):
    keras.config.set_dtype_policy(policy)
    x, y = noisy_data()
    features = keras.Input((INPUT_DIM,))
    labels = keras.Input((), dtype="int32")
    outputs = []
    for name, make_head in sorted(HEADS.items()):
        embeddings = own_backbone(features, name)
        head = make_head()
        outputs.append(head(embeddings) if name == "normalized_dense" else head(embeddings, labels=labels))
    centered = keras_margin.CenterLossLayer(NUM_CLASSES, alpha=0.9, weight=1.0)(own_backbone(features, "center"), labels=labels)
    outputs.append(keras.layers.Dense(NUM_CLASSES, name="center_softmax")(centered))
    model = keras.Model([features, labels], outputs)
    soak(model, [x, y], y, [keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * len(outputs))


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
def test_metric_losses_soak(policy):
    keras.config.set_dtype_policy(policy)
    x, y = noisy_data()
    features = keras.Input((INPUT_DIM,))
    names = sorted(LOSSES)
    model = keras.Model(features, [own_backbone(features, name) for name in names])
    soak(model, x, y, [LOSSES[name]() for name in names])
