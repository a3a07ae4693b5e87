"""Automatic scale (AdaCos) and margin warm-up of the normalized heads.

References are written here and in tests/reference.py from the papers:
AdaCos (Zhang et al., CVPR 2019) eq. 13 (fixed) and eq. 15 (dynamic), and a
linear ramp m_t = m · min(1, t / n) of the margin parameters.
"""

import math

import keras
import numpy as np
import pytest

import keras_margin
import reference

NUM_CLASSES, DIM, BATCH = 7, 5, 12


def sample(rng, batch=BATCH):
    x = rng.normal(size=(batch, DIM)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, batch).astype("int32")
    return x, labels


def built(head, rng):
    x, labels = sample(rng)
    head(x)  # builds the kernel without touching the training state
    return head


# --- scale="auto": √2·ln(C − 1) ------------------------------------------------------


@pytest.mark.parametrize("num_classes, expected", [(3, math.sqrt(2) * math.log(2)), (1001, 2**0.5 * np.log(1000))])
def test_auto_scale_formula(num_classes, expected):
    head = keras_margin.ArcMarginHead(num_classes, scale="auto")
    assert head.current_scale == pytest.approx(expected, rel=1e-12)


def test_auto_scale_logits_match_reference(rng):
    x, labels = sample(rng)
    s = math.sqrt(2.0) * math.log(NUM_CLASSES - 1)
    arc = keras_margin.ArcMarginHead(NUM_CLASSES, scale="auto", margin=0.3)
    cos = keras_margin.CosMarginHead(NUM_CLASSES, scale="auto", margin=0.2)
    dense = keras_margin.NormalizedDense(NUM_CLASSES, scale="auto")
    for head, expected in [
        (arc, lambda k: reference.arc_logits(x, k, labels, s, 0.3)),
        (cos, lambda k: reference.cos_logits(x, k, labels, s, 0.2)),
    ]:
        out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
        np.testing.assert_allclose(out, expected(np.array(head.kernel)), rtol=1e-5, atol=1e-5)
        plain = keras.ops.convert_to_numpy(head(x))
        np.testing.assert_allclose(plain, s * reference.cosines(x, np.array(head.kernel)), rtol=1e-5, atol=1e-5)
    out = keras.ops.convert_to_numpy(dense(x))
    np.testing.assert_allclose(out, s * reference.cosines(x, np.array(dense.kernel)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", ["auto", "adaptive"])
def test_auto_scale_needs_three_classes(scale):
    with pytest.raises(ValueError, match=r"needs num_classes ≥ 3.*num_classes=2"):
        keras_margin.CosMarginHead(2, scale=scale)
    with pytest.raises(ValueError, match=r"needs num_classes ≥ 3.*num_classes=2"):
        keras_margin.NormalizedDense(2, scale="auto")


def test_bad_scale_strings_are_rejected():
    with pytest.raises(ValueError, match=r"`scale` must be one of \('auto', 'adaptive'\)"):
        keras_margin.ArcMarginHead(10, scale="fixed")
    with pytest.raises(ValueError, match=r"`scale` must be a number in \(0.0, inf\]"):
        keras_margin.NormalizedDense(10, scale="adaptive")


# --- scale="adaptive": the dynamic AdaCos scale -----------------------------------------


def dynamic_scale_reference(x, kernel, labels, previous):
    """Eq. 15 of AdaCos with a loop over the non-target classes, between 1 and √2·ln(C − 1)."""
    cos = reference.cosines(x, kernel)
    total = 0.0
    for i, y in enumerate(labels):
        total += sum(math.exp(previous * cos[i, k]) for k in range(cos.shape[1]) if k != y)
    b_avg = total / len(labels)
    theta = np.arccos(np.clip(cos[np.arange(len(labels)), labels], -1 + 1e-6, 1 - 1e-6))
    value = math.log(b_avg) / math.cos(min(math.pi / 4, float(np.median(theta))))
    return max(1.0, min(value, math.sqrt(2.0) * math.log(kernel.shape[1] - 1)))


def test_adaptive_scale_follows_adacos_over_steps(rng):
    dim = 64  # non-target cosines near 0, as in the paper's analysis: the formula stays below its cap
    head = keras_margin.CosMarginHead(NUM_CLASSES, scale="adaptive", margin=0.1)
    head.build((None, dim))
    scale = cap = math.sqrt(2.0) * math.log(NUM_CLASSES - 1)
    assert head.current_scale == pytest.approx(scale, rel=1e-6)
    kernel = np.array(head.kernel)
    for _ in range(3):
        labels = rng.integers(0, NUM_CLASSES, BATCH)
        x = (kernel[:, labels].T + 0.05 * rng.normal(size=(BATCH, dim))).astype("float32")
        out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
        scale = dynamic_scale_reference(x, kernel, labels, scale)
        assert 1.0 < scale < cap
        assert head.current_scale == pytest.approx(scale, rel=1e-4)
        # the step's logits use the scale just computed
        np.testing.assert_allclose(out, reference.cos_logits(x, kernel, labels, scale, 0.1), rtol=1e-4, atol=1e-4)
    x = rng.normal(size=(BATCH, dim)).astype("float32")
    head(x, labels=labels, training=False)
    head(x)
    assert head.current_scale == pytest.approx(scale, rel=1e-4), "only training steps update the scale"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(head(x)), scale * reference.cosines(x, kernel), rtol=1e-4, atol=1e-4
    )


def test_adaptive_scale_is_floored_when_the_formula_goes_below_one():
    # Three classes at 120° in the plane and samples on their own class: every
    # non-target cosine is -1/2, so ln(B_avg) = ln 2 - s/2 < 0 for s > 1.39.
    kernel = np.array([[1.0, -0.5, -0.5], [0.0, math.sqrt(0.75), -math.sqrt(0.75)]], "float32")
    head = keras_margin.ArcMarginHead(3, scale="adaptive", margin=0.0,
                                      kernel_initializer=keras.initializers.Constant(kernel))
    x = kernel.T.copy()
    labels = np.arange(3)
    head(x, labels=labels, training=True)
    b_avg = 2 * math.exp(-0.5 * math.sqrt(2) * math.log(2))
    assert math.log(b_avg) / math.cos(0.0) < 1.0  # the formula's value, below the floor
    assert head.current_scale == pytest.approx(1.0)


def test_adaptive_scale_is_capped_where_the_formula_diverges(rng):
    # 30 classes in 4 dimensions: some non-target cosine of every sample is
    # near 1, so the formula alone multiplies the scale by ~1.4 each step and
    # overflows to NaN within a few hundred steps.
    num_classes, dim = 30, 4
    head = keras_margin.ArcMarginHead(num_classes, scale="adaptive", margin=0.5)
    cap = math.sqrt(2.0) * math.log(num_classes - 1)
    x = rng.normal(size=(16, dim)).astype("float32")
    labels = rng.integers(0, num_classes, 16)
    head(x)
    kernel = np.array(head.kernel)
    cos = reference.cosines(x, kernel)
    b_avg = np.mean([sum(math.exp(cap * cos[i, k]) for k in range(num_classes) if k != y)
                     for i, y in enumerate(labels)])
    theta = np.arccos(cos[np.arange(16), labels])
    assert math.log(b_avg) / math.cos(min(math.pi / 4, float(np.median(theta)))) > cap  # the formula's value
    for _ in range(400):
        out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
    assert head.current_scale == pytest.approx(cap, rel=1e-6)
    assert np.all(np.isfinite(out))


# --- margin warm-up -----------------------------------------------------------------------


WARMUP_HEADS = {
    "arc": (lambda n: keras_margin.ArcMarginHead(NUM_CLASSES, scale=10.0, margin=0.4, margin_warmup_steps=n),
            lambda x, k, y, f: reference.arc_logits(x, k, y, 10.0, 0.4 * f)),
    "cos": (lambda n: keras_margin.CosMarginHead(NUM_CLASSES, scale=10.0, margin=0.3, margin_warmup_steps=n),
            lambda x, k, y, f: reference.cos_logits(x, k, y, 10.0, 0.3 * f)),
    "combined": (
        lambda n: keras_margin.CombinedMarginHead(NUM_CLASSES, scale=10.0, m1=1.4, m2=0.2, m3=0.1,
                                                  margin_warmup_steps=n),
        lambda x, k, y, f: reference.combined_logits(x, k, y, 10.0, 1 + 0.4 * f, 0.2 * f, 0.1 * f),
    ),
}


@pytest.mark.parametrize("kind", sorted(WARMUP_HEADS))
def test_warmup_ramps_the_margin_linearly(rng, kind):
    make, expected = WARMUP_HEADS[kind]
    head = built(make(4), rng)
    kernel = np.array(head.kernel)
    assert head.current_margin_factor == 0.0
    for step in range(7):
        x, labels = sample(rng)
        if step == 2:  # evaluation and prediction calls in between change nothing
            head(x, labels=labels, training=False)
            head(x)
        out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
        factor = min(1.0, step / 4)
        np.testing.assert_allclose(out, expected(x, kernel, labels, factor), rtol=1e-5, atol=1e-5, err_msg=step)
        assert head.current_margin_factor == pytest.approx(factor)
    # an evaluation call uses the factor of the last training step
    x, labels = sample(rng)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(head(x, labels=labels)), expected(x, kernel, labels, 1.0), rtol=1e-5, atol=1e-5
    )


def test_without_warmup_the_margin_is_full_from_the_start(rng):
    head = built(keras_margin.ArcMarginHead(NUM_CLASSES, scale=10.0, margin=0.4), rng)
    x, labels = sample(rng)
    out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
    np.testing.assert_allclose(out, reference.arc_logits(x, np.array(head.kernel), labels, 10.0, 0.4), rtol=1e-5,
                               atol=1e-5)
    assert head.current_margin_factor == 1.0


def xla_model(head, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((DIM,))
    labels = keras.Input((), dtype="int32")
    embeddings = keras.layers.Dense(4)(inputs)
    model = keras.Model([inputs, labels], head(embeddings, labels=labels))
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    return model


def test_warmup_and_adaptive_scale_under_xla_are_logged(rng):
    x, labels = sample(rng, 40)
    head = keras_margin.ArcMarginHead(NUM_CLASSES, scale="adaptive", margin=0.5, margin_warmup_steps=6)
    model = xla_model(head)
    history = model.fit([x, labels], labels, batch_size=10, epochs=3, verbose=0)  # 4 steps per epoch
    assert int(keras.ops.convert_to_numpy(head.warmup_step)) == 6, "the counter stops at the end of the warm-up"
    assert head.current_margin_factor == 1.0
    if keras.backend.backend() != "tensorflow":
        assert "margin_factor" not in history.history  # layer metrics reach History on TensorFlow only
        return
    # the factor of the epoch's last step: steps 3, 7 and 11 → 3/6, 1, 1
    np.testing.assert_allclose(history.history["margin_factor"], [0.5, 1.0, 1.0])
    assert history.history["scale"][-1] == pytest.approx(head.current_scale)
    assert 1.0 <= head.current_scale <= math.sqrt(2) * math.log(NUM_CLASSES - 1) + 1e-6


# --- MarginScheduler ------------------------------------------------------------------------


def test_margin_scheduler_sets_the_factor_each_step(rng):
    x, labels = sample(rng, 40)
    head = keras_margin.CosMarginHead(NUM_CLASSES, scale=10.0, margin=0.3)
    model = xla_model(head)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if hasattr(self.model, "jax_state_sync"):
                self.model.jax_state_sync()
            seen.append(head.current_margin_factor)

    schedule = keras_margin.callbacks.MarginScheduler(lambda step: 0.5 - 0.5 * math.cos(math.pi * min(step, 5) / 5))
    history = model.fit([x, labels], labels, batch_size=10, epochs=2, verbose=0, callbacks=[schedule, Record()])
    expected = [0.5 - 0.5 * math.cos(math.pi * min(t, 5) / 5) for t in range(8)]
    np.testing.assert_allclose(seen, expected, atol=1e-6)
    np.testing.assert_allclose(history.history["margin_factor"], [expected[3], expected[7]], atol=1e-6)


def test_margin_scheduler_factor_reaches_the_logits(rng):
    head = built(keras_margin.ArcMarginHead(NUM_CLASSES, scale=10.0, margin=0.4), rng)
    head.margin_factor.assign(0.25)  # what the scheduler writes
    x, labels = sample(rng)
    out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
    np.testing.assert_allclose(out, reference.arc_logits(x, np.array(head.kernel), labels, 10.0, 0.1), rtol=1e-5,
                               atol=1e-5)


def test_margin_scheduler_per_epoch_and_errors(rng):
    x, labels = sample(rng, 20)
    head = keras_margin.CosMarginHead(NUM_CLASSES, scale=10.0, margin=0.3)
    model = xla_model(head)
    per_epoch = keras_margin.callbacks.MarginScheduler(lambda epoch: [0.0, 0.5, 1.0][epoch], unit="epoch")
    history = model.fit([x, labels], labels, batch_size=10, epochs=3, verbose=0, callbacks=[per_epoch])
    assert history.history["margin_factor"] == [0.0, 0.5, 1.0]

    with pytest.raises(ValueError, match=r"margin factor in \[0, 1\]. Received: 1.5 at step 6"):
        model.fit([x, labels], labels, verbose=0, callbacks=[keras_margin.callbacks.MarginScheduler(lambda s: 1.5)])
    with pytest.raises(ValueError, match="`unit` must be one of"):
        keras_margin.callbacks.MarginScheduler(lambda s: 1.0, unit="batch")
    with pytest.raises(ValueError, match="`schedule` must be a function"):
        keras_margin.callbacks.MarginScheduler(0.5)

    warm = xla_model(keras_margin.CosMarginHead(NUM_CLASSES, margin_warmup_steps=3))
    with pytest.raises(ValueError, match="margin_warmup_steps=3, which sets the same weight"):
        warm.fit([x, labels], labels, verbose=0, callbacks=[keras_margin.callbacks.MarginScheduler(lambda s: 1.0)])
    plain = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(NUM_CLASSES)])
    plain.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="found no scaled-cosine margin head"):
        plain.fit(x, labels, verbose=0, callbacks=[keras_margin.callbacks.MarginScheduler(lambda s: 1.0)])


@pytest.mark.parametrize("bad", [-1, 2.5, "10"])
def test_bad_warmup_steps(bad):
    with pytest.raises(ValueError, match=r"`margin_warmup_steps` must be an integer in \[0, inf\]"):
        keras_margin.ArcMarginHead(10, margin_warmup_steps=bad)


def test_state_round_trips_through_a_keras_file(tmp_path, rng):
    x, labels = sample(rng, 40)
    head = keras_margin.CombinedMarginHead(NUM_CLASSES, scale="adaptive", m2=0.3, m3=0.1, margin_warmup_steps=9,
                                           name="head")
    model = xla_model(head)
    model.fit([x, labels], labels, batch_size=10, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    again = restored.get_layer("head")
    assert again.get_config() == head.get_config()
    for name in ("margin_factor", "warmup_step", "adaptive_scale"):
        np.testing.assert_array_equal(np.array(getattr(again, name)), np.array(getattr(head, name)), err_msg=name)
    assert int(keras.ops.convert_to_numpy(again.warmup_step)) == 4 and again.current_margin_factor == pytest.approx(3 / 9)
