"""keras_margin.backbones: sizes against insightface's published counts and a closed form, layout, precision.

References: the parameter and multiply-accumulate counts insightface's modules
give (issue 14 lists them, counted from `arcface_torch/backbones`), a
closed-form parameter count written here from the architecture, and a NumPy
convolution with PyTorch's symmetric padding.
"""

import numpy as np
import pytest
import keras
import tensorflow as tf

import keras_margin
from keras_margin import backbones
from keras_margin.backbones.blocks import conv

# (parameters in millions, multiply-accumulates at 112×112 in G), counted from insightface's modules
PUBLISHED = {
    "iresnet18": (24.03, 2.61),
    "iresnet34": (34.14, 4.46),
    "iresnet50": (43.59, 6.31),
    "iresnet100": (65.16, 12.09),
    "iresnet200": (118.83, 23.42),
    "mobilefacenet": (2.06, 0.44),
    "mobilefacenet_large": (6.32, 1.82),
}
BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 200: (6, 26, 60, 6)}


def parameters(model):
    """Parameters as PyTorch counts them: every weight but BatchNorm's running statistics."""
    return sum(int(np.prod(w.shape)) for w in model.weights if "moving_" not in w.path)


def iresnet_parameters(depth, embedding_dim=512, spatial=7):
    """Closed form from the architecture: convs, BN (γ, β), PReLU, the last Dense, BN (β only)."""
    total = 3 * 3 * 3 * 64 + 2 * 64 + 64  # stem conv, BN, PReLU
    channels_in = 64
    for channels, blocks in zip((64, 128, 256, 512), BLOCKS[depth]):
        for block in range(blocks):
            total += 2 * channels_in + 9 * channels_in * channels + 2 * channels + channels
            total += 9 * channels * channels + 2 * channels
            if block == 0:  # stride 2: the 1×1 shortcut and its BN
                total += channels_in * channels + 2 * channels
            channels_in = channels
    total += 2 * 512 + 512 * spatial * spatial * embedding_dim + embedding_dim + embedding_dim
    return total


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_sizes_match_insightface(name):
    model = getattr(backbones, name)()
    millions, gmacs = PUBLISHED[name]
    # the published figures carry two decimals
    assert parameters(model) / 1e6 == pytest.approx(millions, abs=0.006)
    assert backbones.count_macs(model) / 1e9 == pytest.approx(gmacs, abs=0.006)
    if name.startswith("iresnet"):
        assert parameters(model) == iresnet_parameters(int(name[len("iresnet"):]))
    assert model.output_shape == (None, 512)


def test_iresnet_layout_and_arguments():
    model = backbones.iresnet(18, embedding_dim=128, input_shape=(64, 64, 3))
    sizes = [model.get_layer(f"stage{s}_block2_add").output.shape[1:] for s in (1, 2, 3, 4)]
    assert sizes == [(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512)]  # channels last, each stage / 2
    assert model.output_shape == (None, 128)
    assert parameters(model) == iresnet_parameters(18, 128, spatial=4)
    assert model.get_layer("embedding").gamma is None  # the last BN has no scale (fixed at 1)
    assert model.get_layer("stem_bn").epsilon == 1e-5
    with pytest.raises(ValueError, match=r"`depth` must be one of \(18, 34, 50, 100, 200\)"):
        backbones.iresnet(19)
    with pytest.raises(ValueError, match="`dropout` must be a number"):
        backbones.iresnet(18, dropout=1.0)
    with pytest.raises(ValueError, match="`blocks` must be 4 positive integers"):
        backbones.mobilefacenet(blocks=(1, 2, 3))


def test_stride_two_convolution_pads_like_pytorch(rng):
    x = rng.normal(size=(1, 6, 6, 2)).astype("float32")
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, conv(inputs, 3, 3, "c", strides=2))
    kernel = model.get_layer("c").kernel.numpy()
    padded = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))  # PyTorch padding=1: one pixel on every side
    expected = np.zeros((3, 3, 3))
    for i in range(3):
        for j in range(3):
            window = padded[2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
            expected[i, j] = np.einsum("hwc,hwco->o", window, kernel)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x))[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trunk_and_float32_embedding(policy):
    keras.config.set_dtype_policy(policy)
    for model in (backbones.iresnet(18, input_shape=(32, 32, 3)), backbones.mobilefacenet(input_shape=(32, 32, 3))):
        low = policy.split("_")[1]
        assert model.get_layer("stem_conv").compute_dtype == low
        assert model.get_layer("fc").compute_dtype == "float32"
        assert model.get_layer("embedding").compute_dtype == "float32"
        out = model(np.zeros((2, 32, 32, 3), "float32"))
        assert keras.backend.standardize_dtype(out.dtype) == "float32"


@pytest.mark.parametrize("make", [
    pytest.param(lambda: backbones.iresnet(18, embedding_dim=16, input_shape=(32, 32, 3)), id="iresnet18"),
    # XLA on CPU is slow on depthwise convolutions: about a minute
    pytest.param(lambda: backbones.mobilefacenet(embedding_dim=16, input_shape=(32, 32, 3)), id="mobilefacenet",
                 marks=pytest.mark.slow),
])
def test_trains_with_xla_and_round_trips(make, tmp_path, rng):
    embedder = make()
    images = keras.Input((32, 32, 3))
    labels = keras.Input((), dtype="int32")
    head = keras_margin.ArcMarginHead(4)
    model = keras.Model([images, labels], head(embedder(images), labels=labels))
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    x = rng.uniform(-1, 1, size=(16, 32, 32, 3)).astype("float32")
    y = np.arange(16) % 4
    before = embedder.get_layer("fc").kernel.numpy().copy()
    history = model.fit([x, y], y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.allclose(before, embedder.get_layer("fc").kernel.numpy())
    embedder.save(tmp_path / "embedder.keras")
    reloaded = keras.saving.load_model(tmp_path / "embedder.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), embedder.predict(x, verbose=0), atol=1e-5)
    if "tf_saved_model" in keras_margin.export.FORMATS_BY_BACKEND[keras.backend.backend()]:
        keras_margin.export.export_embedding_model(model, tmp_path / "savedmodel")
        saved = tf.saved_model.load(str(tmp_path / "savedmodel"))  # keep a reference while serving
        served = saved.serve(x)["embeddings"].numpy()
    else:  # the torch backend exports ONNX only
        onnxruntime = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
        keras_margin.export.export_embedding_model(model, tmp_path / "embedder.onnx", format="onnx")
        session = onnxruntime.InferenceSession(str(tmp_path / "embedder.onnx"), providers=["CPUExecutionProvider"])
        served = session.run(["embeddings"], {"images": x})[0]
    expected = embedder.predict(x, verbose=0)
    np.testing.assert_allclose(served, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)


def test_grouped_convolution_equals_the_grouped_formula(rng):
    from keras_margin.backbones.blocks import GroupedConv2D

    x = rng.normal(size=(2, 7, 7, 8)).astype("float32")
    layer = GroupedConv2D(6, 3, groups=2, strides=2, padding="valid")
    y = keras.ops.convert_to_numpy(layer(x))
    kernel = layer.kernel.numpy()  # (3, 3, 4 inputs per group, 6 outputs)
    expected = np.zeros((2, 3, 3, 6))
    for out in range(6):
        group = out // 3  # 3 outputs per group, reading inputs 4·group .. 4·group + 3
        for i in range(3):
            for j in range(3):
                window = x[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3, 4 * group:4 * group + 4]
                expected[:, i, j, out] = np.einsum("bhwc,hwc->b", window, kernel[:, :, :, out])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert layer.compute_output_shape((None, 7, 7, 8)) == (None, 3, 3, 6)
    clone = GroupedConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="`filters` must be a multiple of `groups`"):
        GroupedConv2D(5, 3, groups=2)
