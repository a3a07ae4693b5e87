"""Serves an exported SavedModel in a process that never imports keras_margin.

    python serve_savedmodel.py SAVED_MODEL INPUT.npy OUTPUT_KEY RESULT.npz

Writes `saved_model` (tf.saved_model.load) and `tfsm_layer`
(keras.layers.TFSMLayer) outputs for the images in INPUT.npy.
"""

import sys

import numpy as np
import tensorflow as tf

import keras

path, inputs_path, key, result_path = sys.argv[1:]
images = np.load(inputs_path)
loaded = tf.saved_model.load(path)
from_saved_model = loaded.serve(tf.constant(images))[key].numpy()
layer = keras.layers.TFSMLayer(path, call_endpoint="serve")
from_tfsm_layer = keras.ops.convert_to_numpy(layer(images)[key])
assert "keras_margin" not in sys.modules, "the served model must not need keras_margin"
np.savez(result_path, saved_model=from_saved_model, tfsm_layer=from_tfsm_layer)
print("served", from_saved_model.shape)
