"""Runs an exported ONNX or LiteRT embedding model in its own runtime, in a process without Keras.

    python serve_exported.py onnx|litert MODEL_FILE INPUT.npy RESULT.npy

ONNX goes through onnxruntime, LiteRT through the `ai-edge-litert` interpreter
(the `[litert]` extra; no TensorFlow). Fails if keras or keras_margin got
imported.
"""

import sys

import numpy as np

kind, path, inputs_path, result_path = sys.argv[1:]
images = np.load(inputs_path)
if kind == "onnx":
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"], session.get_inputs()
    assert [o.name for o in session.get_outputs()] == ["embeddings"], session.get_outputs()
    embeddings = session.run(["embeddings"], {"images": images})[0]
elif kind == "litert":
    from ai_edge_litert.interpreter import Interpreter  # LiteRT's own runtime, without TensorFlow

    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_default")
    embeddings = runner(images=images)["embeddings"]
else:
    raise SystemExit(f"unknown format {kind!r}")
for module in ("keras", "keras_margin"):
    assert module not in sys.modules, f"serving imported {module}"
np.save(result_path, embeddings)
print("served", embeddings.shape)
