"""Training resumed from a `.keras` file, a ModelCheckpoint or BackupAndRestore matches training that never stopped.

The model carries every kind of state the package owns: class centers
(`CenterLossLayer`), the λ annealing counter (`SphereMarginHead`) or the margin
warm-up counter, margin factor and adaptive scale (`ArcMarginHead`), and the
optimizer's slots. TensorFlow's op determinism is on for these tests (and Keras then runs
the step without XLA, since not every XLA op has a deterministic kernel). TensorFlow's public
API can switch it on but not off again, so they run in a process of their own:
`test_with_op_determinism_in_a_process_of_its_own` runs this module in a child pytest with
determinism on and fails with the child's report; in the parent the other tests are skipped.
"""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_margin

CHILD_VARIABLE = "KERAS_MARGIN_TEST_OP_DETERMINISM"
IN_CHILD = os.environ.get(CHILD_VARIABLE) == "1"
if IN_CHILD:
    tf.config.experimental.enable_op_determinism()  # for the whole child process, which runs only this module

NUM_CLASSES, DIM, EPOCHS, SPLIT = 4, 6, 4, 2
STEPS_PER_EPOCH = 3  # 48 examples / 16 per batch
WARMUP_STEPS = 8  # ends inside the third epoch, after the split
HEADS = {
    "sphere": lambda: keras_margin.SphereMarginHead(NUM_CLASSES, lambda_base=100.0, name="head"),
    "arc_warmup_adaptive": lambda: keras_margin.ArcMarginHead(
        NUM_CLASSES, scale="adaptive", margin_warmup_steps=WARMUP_STEPS, name="head"
    ),
}


@pytest.fixture(autouse=True)
def in_the_deterministic_child(request):
    if not IN_CHILD and request.node.name != "test_with_op_determinism_in_a_process_of_its_own":
        pytest.skip("runs in the child process with op determinism (test_with_op_determinism_in_a_process_of_its_own)")


def test_with_op_determinism_in_a_process_of_its_own(request):
    if IN_CHILD:
        pytest.skip("the parent's test")
    root = pathlib.Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(pathlib.Path(__file__).resolve()), "-q", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-m", request.config.getoption("markexpr") or ""],
        cwd=root, capture_output=True, text=True, timeout=1500, check=False,
        env=dict(os.environ, **{CHILD_VARIABLE: "1"}),
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


def data():
    rng = np.random.default_rng(0)
    labels = np.arange(48) % NUM_CLASSES
    x = rng.normal(size=(48, DIM)).astype("float32") + np.eye(NUM_CLASSES, DIM, dtype="float32")[labels] * 2
    return [x, labels.astype("int32")], labels.astype("int32")


def build(head_kind, seed=7):
    keras.utils.set_random_seed(seed)
    images = keras.Input((DIM,), name="x")
    labels = keras.Input((), dtype="int32", name="labels")
    embeddings = keras.layers.Dense(5, name="embedding")(images)
    embeddings = keras_margin.CenterLossLayer(NUM_CLASSES, alpha=0.3, weight=0.01, name="center")(embeddings, labels=labels)
    logits = HEADS[head_kind]()(embeddings, labels=labels)
    model = keras.Model([images, labels], logits)
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    return model


def fit(model, epochs, initial_epoch=0, callbacks=()):
    x, y = data()
    return model.fit(x, y, batch_size=16, shuffle=False, epochs=epochs, initial_epoch=initial_epoch,
                     callbacks=list(callbacks), verbose=0)


def state(model):
    weights = {v.path: np.array(v) for v in model.weights}
    # the optimizer's own name (adam, adam_1, ...) depends on how many were made before
    weights.update({f"optimizer/{v.path.split('/', 1)[-1]}": np.array(v) for v in model.optimizer.variables})
    return weights


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7, err_msg=key)


@pytest.fixture(scope="module", params=sorted(HEADS))
def head_kind(request):
    return request.param


@pytest.fixture(scope="module")
def uninterrupted(head_kind):
    model = build(head_kind)
    history = fit(model, EPOCHS)
    return state(model), history.history["loss"]


def test_reloaded_keras_file_continues_identically(tmp_path, head_kind, uninterrupted):
    model = build(head_kind)
    fit(model, SPLIT)
    model.save(tmp_path / "halfway.keras")
    restored = keras.saving.load_model(tmp_path / "halfway.keras", safe_mode=True)
    head = restored.get_layer("head")
    steps = SPLIT * STEPS_PER_EPOCH
    if head_kind == "sphere":
        assert int(head.annealing_step.numpy()) == steps
    else:
        assert int(head.warmup_step.numpy()) == steps
        # the last step before saving ran with the factor of step steps - 1
        assert head.current_margin_factor == pytest.approx((steps - 1) / WARMUP_STEPS)
        assert head.current_scale == pytest.approx(float(np.array(model.get_layer("head").adaptive_scale)))
    history = fit(restored, EPOCHS, initial_epoch=SPLIT)
    expected_state, expected_losses = uninterrupted
    np.testing.assert_allclose(history.history["loss"], expected_losses[SPLIT:], rtol=1e-6)
    assert_same_state(state(restored), expected_state)


def test_model_checkpoint_resume(tmp_path, head_kind, uninterrupted):
    model = build(head_kind)
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch_{epoch}.keras"))
    fit(model, SPLIT, callbacks=[checkpoint])
    restored = keras.saving.load_model(tmp_path / f"epoch_{SPLIT}.keras")
    fit(restored, EPOCHS, initial_epoch=SPLIT)
    assert_same_state(state(restored), uninterrupted[0])


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == SPLIT:
            raise KeyboardInterrupt("simulated preemption")


def test_backup_and_restore_resumes_after_an_interruption(tmp_path, head_kind, uninterrupted):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = build(head_kind)
    with pytest.raises(KeyboardInterrupt):
        fit(model, EPOCHS, callbacks=[backup, Interrupt()])
    resumed = build(head_kind, seed=99)  # a fresh process would rebuild the model from scratch
    history = fit(resumed, EPOCHS, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert len(history.history["loss"]) == EPOCHS - SPLIT  # it skipped the epochs already done
    assert_same_state(state(resumed), uninterrupted[0])


def test_two_runs_with_one_seed_are_identical(head_kind):
    first, second = build(head_kind, seed=3), build(head_kind, seed=3)
    fit(first, 2)
    fit(second, 2)
    for key, value in state(first).items():
        np.testing.assert_array_equal(value, state(second)[key], err_msg=key)


def test_losses_and_metrics_round_trip_in_compile_config(tmp_path):
    inputs = keras.Input((DIM,))
    embedder = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    embedder.compile("adam", keras_margin.losses.TripletLoss(margin=0.3, mining="batch_hard", distance="cosine"))
    embedder.save(tmp_path / "triplet.keras")
    restored = keras.saving.load_model(tmp_path / "triplet.keras", safe_mode=True)
    assert restored.loss.get_config() == embedder.loss.get_config()

    head = keras_margin.ArcMarginHead(NUM_CLASSES, scale=16.0)
    labels = keras.Input((), dtype="int32")
    model = keras.Model([inputs, labels], head(embedder(inputs), labels=labels))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras_margin.metrics.TargetAngle(head)])
    x, y = data()
    model.fit([x[0], y], y, epochs=1, verbose=0)
    model.save(tmp_path / "arc.keras")
    restored = keras.saving.load_model(tmp_path / "arc.keras", safe_mode=True)
    assert "TargetAngle" in str(restored.get_compile_config()["metrics"])
    assert restored.evaluate([x[0], y], y, verbose=0, return_dict=True).keys() == {"loss", "target_angle"}
