"""Saves the models of tests/test_legacy_models.py with keras_margin 0.1.

Run with the 0.1 tree first on the path, e.g.
`git archive <0.1 commit> keras_margin | tar -x -C /tmp/oldcode` and
`PYTHONPATH=/tmp/oldcode python make_legacy_models.py tests/legacy_models` (the script
checks that `keras_margin` comes from a directory named oldcode).
"""
import json
import os
import sys

import keras
import numpy as np

import keras_margin
from keras_margin import layers

assert "oldcode" in keras_margin.__file__, keras_margin.__file__
out = sys.argv[1]
C, D = 12, 8
rng = np.random.default_rng(0)
x = rng.normal(size=(6, D)).astype("float32") * 3
y = np.array([0, 3, 5, 7, 11, 3], "int32")
heads = {
    "arc_warmup_adaptive": lambda: layers.ArcMarginHead(C, scale="adaptive", margin=0.4, margin_warmup_steps=4, fallback="insightface"),
    "combined_subcenters": lambda: layers.CombinedMarginHead(C, scale=16.0, m1=1.2, m2=0.2, m3=0.1, num_subcenters=2),
    "magface_not_easy": lambda: layers.MagFaceHead(C, scale=8.0, lower_norm=0.5, upper_norm=5.0, lambda_g=5.0, easy_margin=False),
    "magface_easy": lambda: layers.MagFaceHead(C, scale=8.0, lower_norm=0.5, upper_norm=5.0, lambda_g=5.0),
    "curricular": lambda: layers.CurricularFaceHead(C, scale=8.0, momentum=0.5),
    "adaface": lambda: layers.AdaFaceHead(C, scale=8.0, momentum=0.5),
    "elastic_arc": lambda: layers.ElasticArcMarginHead(C, scale=8.0, margin_std=0.05, seed=3),
    "arc_partial_fc": lambda: layers.ArcMarginHead(C, scale=8.0, sample_rate=0.5, seed=1),
}
expected = {}
for name, make in heads.items():
    inputs = keras.Input((D,)); labels = keras.Input((), dtype="int32")
    head = make()
    model = keras.Model([inputs, labels], head(keras.layers.Dense(D, name="embed")(inputs), labels=labels))
    if "partial" in name:
        model.compile(keras.optimizers.SGD(0.05), jit_compile=False)
    else:
        model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    model.fit([x, y], y, batch_size=6, epochs=3, verbose=0)
    eval_logits = model([x, y], training=False)
    model.save(os.path.join(out, f"{name}.keras"))
    predict = keras.Model(inputs, head(model.get_layer("embed")(inputs)))
    expected[name] = {"eval_logits": np.asarray(eval_logits).tolist(), "plain": np.asarray(predict(x)).tolist(),
                      "kernel": np.asarray(head.kernel).tolist(),
                      "weights": {w.path: np.asarray(w).tolist() for w in head.weights}}
np.savez(os.path.join(out, "inputs.npz"), x=x, y=y)
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f)
print("saved", list(expected))
