"""Margin math of the softmax family, as pure `keras.ops` functions.

Everything here is stateless and backend neutral: the layers in
`keras_margin.layers` call these functions, so one formula lives in one place.
All functions take and return float32 tensors (cosines, norms, logits); the
only place a lower precision is used is the matrix product in
`cosine_similarity`, which follows the caller's compute dtype.

Notation: `cos` is cos θ, θ the angle between an embedding `x` and a class
weight `W_j`; the *target* is the column of the true class `y`.
"""

import math

from keras import ops

from keras_margin._mixed_matmul import matmul_float32

__all__ = [
    "l2_norm",
    "l2_normalize",
    "cosine_similarity",
    "linear_logits",
    "max_over_subcenters",
    "clamp_cosine",
    "target_values",
    "shift_target",
    "combined_margin",
    "additive_angular_margin",
    "additive_cosine_margin",
    "chebyshev_cos_multiple",
    "multiplicative_angular_psi",
    "annealed_lambda",
    "blend_with_lambda",
    "adacos_scale",
    "adacos_batch_statistics",
    "adacos_scale_from_statistics",
    "linear_warmup",
    "curricular_modulation",
    "magface_margin",
    "magface_regularizer",
    "magface_minimum_lambda",
    "adaface_norm_scaler",
    "adaface_target",
    "rank_matched",
    "unbiased_std",
]

#: Cosines are clamped to [-1 + COSINE_EPSILON, 1 - COSINE_EPSILON] before any
#: function whose derivative is unbounded at ±1 (sqrt(1 - c²), arccos).
COSINE_EPSILON = 1e-6

#: Floor on squared norms when normalizing, so a zero vector maps to zero
#: (not NaN) and its gradient stays finite.
NORM_EPSILON = 1e-12

ARC_FALLBACKS = ("continuous", "insightface", "easy", "none")
GRADIENT_MODES = ("exact", "detached")


def l2_norm(x, axis=-1, keepdims=True):
    """Euclidean norm with a finite gradient at zero.

    `sqrt(max(Σx², ε))`: the `maximum` routes the gradient of an all-zero
    vector into the constant, so it is 0 rather than NaN.

    Args:
        x: float tensor, cast to float32.
        axis: the axis the norm is taken along; default -1.
        keepdims: whether to keep `axis` with size 1; default `True`.

    Returns:
        float32 tensor: the shape of `x` with `axis` reduced.

    Example:

    ```pycon
    >>> float(l2_norm(np.array([3.0, 4.0]))[0])
    5.0
    ```
    """
    x = ops.cast(x, "float32")
    squared = ops.sum(ops.square(x), axis=axis, keepdims=keepdims)
    return ops.sqrt(ops.maximum(squared, NORM_EPSILON))


def l2_normalize(x, axis=-1):
    """Scales `x` to unit L2 norm along `axis` (a zero vector stays zero).

    Args:
        x: float tensor, cast to float32.
        axis: the axis normalized; default -1.

    Returns:
        float32 tensor of the shape of `x`.

    Example:

    ```pycon
    >>> keras.ops.convert_to_numpy(l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])))
    array([[0.6, 0.8],
           [0. , 0. ]], dtype=float32)
    ```
    """
    x = ops.cast(x, "float32")
    return x / l2_norm(x, axis=axis, keepdims=True)


def cosine_similarity(embeddings, kernel, compute_dtype="float32", kernel_layout="columns"):
    """Cosines between each embedding and each class weight of `kernel`.

    Args:
        embeddings: tensor of shape `(batch, dim)`.
        kernel: tensor of shape `(dim, classes)` (`kernel_layout="columns"`,
            one class weight per column, as in `keras.layers.Dense`) or
            `(classes, dim)` (`"rows"`).
        compute_dtype: dtype of the matrix product (e.g. `"float16"` under a
            mixed-precision policy). Norms are always taken in float32 and
            the product's inputs have unit norm, so nothing overflows.
        kernel_layout: `"columns"` or `"rows"`.

    Returns:
        float32 tensor of shape `(batch, classes)` with values in about [-1, 1].
    """
    x = l2_normalize(embeddings, axis=-1)
    rows = kernel_layout == "rows"
    w = l2_normalize(kernel, axis=-1 if rows else 0)
    return matmul_float32(x, w, compute_dtype, transpose_b=rows)


def linear_logits(embeddings, kernel, compute_dtype="float32"):
    """The plain product `x · kernel` in float32, computed in `compute_dtype`.

    Under float16 compute, both factors are first divided by their largest
    norm (a constant without gradient) and the product multiplied back in
    float32, so the float16 product lies in [−1, 1] and cannot overflow
    however large the norms grow. The value and the gradient are those of
    the plain product. Other dtypes need no rescaling (bfloat16 has the range
    of float32).

    Args:
        embeddings: tensor of shape `(batch, dim)`.
        kernel: tensor of shape `(dim, columns)`.
        compute_dtype: dtype of the matrix product.

    Returns:
        float32 tensor of shape `(batch, columns)`.
    """
    x = ops.cast(embeddings, "float32")
    w = ops.cast(kernel, "float32")
    if compute_dtype != "float16":
        return matmul_float32(x, w, compute_dtype)
    x_bound = ops.stop_gradient(ops.max(l2_norm(x, axis=-1)))
    w_bound = ops.stop_gradient(ops.max(l2_norm(w, axis=0)))
    return matmul_float32(x / x_bound, w / w_bound, "float16") * (x_bound * w_bound)


def max_over_subcenters(cos, num_subcenters):
    """Reduces `(batch, classes * K)` cosines to `(batch, classes)`.

    Columns are laid out class-major: column `c * K + k` is sub-center `k` of
    class `c` (sub-center ArcFace, Deng et al. 2020). Each class keeps its
    closest sub-center.

    Args:
        cos: float tensor `(batch, classes * K)`.
        num_subcenters: K, a Python int ≥ 1 (1 returns `cos` unchanged).

    Returns:
        tensor `(batch, classes)`.
    """
    if num_subcenters == 1:
        return cos
    num_columns = cos.shape[-1]
    grouped = ops.reshape(cos, (-1, num_columns // num_subcenters, num_subcenters))
    return ops.max(grouped, axis=-1)


def clamp_cosine(cos, epsilon=COSINE_EPSILON):
    """Clamps cosines into the open interval (-1, 1).

    Args:
        cos: float tensor of cosines.
        epsilon: the distance kept from ±1; default `COSINE_EPSILON` (1e-6).

    Returns:
        tensor of the shape of `cos`, in `[-1 + epsilon, 1 - epsilon]`.
    """
    return ops.clip(cos, -1.0 + epsilon, 1.0 - epsilon)


def target_values(values, labels):
    """Each row's entry in its target column, shape `(batch,)`.

    Read with a gather, so no `(batch, classes)` product is formed; the
    gradient, `one_hot · upstream`, is one elementwise expression that XLA
    fuses into the consumer of the values' gradient (autodiff of a gather
    would scatter into a zero `(batch, classes)` buffer instead). A label
    outside the classes (possible inside a compiled function) reads 0 and
    passes no gradient.

    Args:
        values: float32 `(batch, classes)`.
        labels: int32 `(batch,)`.

    Returns:
        float32 `(batch,)`: `values[i, labels[i]]` for each row i.
    """
    num_classes = values.shape[-1]
    in_range = ops.cast((labels >= 0) & (labels < num_classes), "float32")
    columns = ops.expand_dims(ops.clip(labels, 0, num_classes - 1), -1)

    @ops.custom_gradient
    def gathered(values):
        def gradient(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            return ops.one_hot(labels, num_classes, dtype="float32") * ops.expand_dims(upstream, -1)

        return ops.take_along_axis(values, columns, axis=-1)[:, 0] * in_range, gradient

    return gathered(values)


def shift_target(values, labels, shift, scale=1.0):
    """`scale · values`, with `scale · shift` added in each row's target column.

    Args:
        values: float32 `(batch, classes)` (cosines, or raw logits).
        labels: int32 `(batch,)`, the target column of each row.
        shift: float32 `(batch,)`, the change of each row's target value.
        scale: float32 scalar without gradient (a number or a
            non-trainable weight).

    Returns:
        float32 `(batch, classes)`: `scale · (values + one_hot · shift)`.

    The forward pass is one fused elementwise pass. The gradient is the
    exact one, written out: `scale · upstream` for `values`, and for `shift`
    each row's target entry of it, read with a gather. Autodiff of the
    one-hot product would get the latter as a row sum of `one_hot · upstream`,
    and XLA on CPU computes that product into a `(batch, classes)` buffer of
    its own while the softmax is still live: one more such buffer at the
    training step's peak. A row whose label is outside the classes
    (all-zero one-hot, possible inside a compiled function) is left
    unchanged; the gradient its `shift` gets is unused, since every path
    from `shift` back to `values` goes through that zero one-hot.
    """
    num_classes = values.shape[-1]
    columns = ops.expand_dims(ops.clip(labels, 0, num_classes - 1), -1)
    scale = ops.cast(ops.convert_to_tensor(scale), "float32")

    @ops.custom_gradient
    def shifted(values, shift):
        one_hot = ops.one_hot(labels, num_classes, dtype="float32")
        result = scale * (values + one_hot * ops.expand_dims(shift, -1))

        def gradient(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            d_values = scale * upstream
            return d_values, ops.take_along_axis(d_values, columns, axis=-1)[:, 0]

        return result, gradient

    return shifted(values, shift)


def combined_margin(cos, m1=1.0, m2=0.0, m3=0.0, fallback="continuous"):
    """Target cosine cos(m1·θ + m2) − m3 of the combined margin (ArcFace §3.3).

    The formula is a monotone decreasing function of θ only while
    m1·θ + m2 ≤ π, i.e. for θ ≤ θ₀ = (π − m2) / m1. Beyond θ₀ (and, for
    `"easy"`, beyond π/2) the `fallback` decides:

    - `"continuous"`: cos θ − (cos θ₀ + 1 + m3) — a shift of the plain
      cosine that meets the formula at θ₀, so the target logit stays
      continuous, strictly decreasing in θ, and never above cos θ.
    - `"insightface"`: cos θ − m2·sin(m2) − m3 (the rule of insightface's
      training code; it jumps down at θ₀).
    - `"easy"`: no margin at all where the formula is invalid or cos θ ≤ 0
      ("easy margin").
    - `"none"`: the raw formula everywhere (it rises again past θ₀).

    With m1 = 1 (the Python number) the formula is expanded as
    cos θ·cos m2 − sin θ·sin m2, so no arccos is needed; otherwise
    θ = arccos(cos θ). The formula is evaluated at the clamped cosine c̃ and
    the result is shifted back by cos θ − c̃, so the gradient stays finite at
    cos θ = ±1 and zero margins give cos θ exactly.

    Args:
        cos: float32 tensor of target cosines, any shape.
        m1: multiplicative angular margin, ≥ 1 (number or scalar tensor).
        m2: additive angular margin, in [0, π) (number or scalar tensor).
        m3: additive cosine margin, ≥ 0 (number or scalar tensor).
        fallback: one of `ARC_FALLBACKS`.

    Returns:
        float32 tensor of the same shape as `cos`.

    Example:

    ```pycon
    >>> cos = np.array([1.0, 0.0, -1.0], "float32")
    >>> target = combined_margin(cos, m1=1.0, m2=0.5, m3=0.0)   # ArcFace's cos(θ + 0.5)
    ```
    """
    if fallback not in ARC_FALLBACKS:
        raise ValueError(
            f"`fallback` must be one of {ARC_FALLBACKS}. Received: fallback={fallback!r}"
        )
    c = clamp_cosine(cos)
    m2 = ops.cast(m2, "float32")
    if isinstance(m1, (int, float)) and m1 == 1.0:
        sin = ops.sqrt(1.0 - ops.square(c))
        with_margin = c * ops.cos(m2) - sin * ops.sin(m2)
    else:
        m1 = ops.cast(m1, "float32")
        with_margin = ops.cos(m1 * ops.arccos(c) + m2)
    with_margin = with_margin - m3 + (cos - c)
    if fallback == "none":
        return with_margin

    cos_limit = ops.cos((math.pi - m2) / m1)
    if fallback == "easy":
        return ops.where(c > ops.maximum(cos_limit, 0.0), with_margin, cos)
    if fallback == "insightface":
        # sin m2 ≥ 0 on [0, π); the clamp keeps float32 rounding of an m2
        # just below π (which lands above π) from raising the target
        beyond = cos - m2 * ops.maximum(ops.sin(m2), 0.0) - m3
    else:  # continuous
        beyond = cos - (cos_limit + 1.0 + m3)
    return ops.where(c > cos_limit, with_margin, beyond)


def additive_angular_margin(cos, margin=0.5, fallback="continuous"):
    """ArcFace target cosine cos(θ + m); see `combined_margin` for `fallback`.

    Args:
        cos: float32 tensor of target cosines, any shape.
        margin: additive angular margin m, in `[0, π)` (number or scalar
            tensor); default 0.5.
        fallback: one of `ARC_FALLBACKS` (`"continuous"`, the default,
            `"insightface"`, `"easy"` or `"none"`).

    Returns:
        float32 tensor of the same shape as `cos`.

    Example:

    ```pycon
    >>> round(float(additive_angular_margin(np.float32(0.0), margin=0.5)), 4)   # cos(π/2 + 0.5)
    -0.4794
    ```
    """
    return combined_margin(cos, m1=1.0, m2=margin, m3=0.0, fallback=fallback)


def additive_cosine_margin(cos, margin=0.35):
    """CosFace / AM-Softmax target cosine cos θ − m.

    Args:
        cos: float tensor of target cosines, any shape.
        margin: additive cosine margin m (number or tensor broadcasting
            against `cos`); default 0.35.

    Returns:
        tensor of the same shape as `cos`.
    """
    return cos - margin


def chebyshev_cos_multiple(cos, m):
    """cos(m·θ) as the Chebyshev polynomial T_m(cos θ), for an integer m ≥ 0.

    Uses T₀ = 1, T₁ = c, T_{n+1} = 2c·T_n − T_{n−1}; the loop is unrolled at
    trace time because `m` is a Python int.

    Args:
        cos: float tensor of cosines c = cos θ.
        m: Python int ≥ 0, the multiple of the angle.

    Returns:
        tensor of the same shape as `cos`.

    Example:

    ```pycon
    >>> round(float(chebyshev_cos_multiple(np.float32(0.5), 2)), 4)   # cos(2·60°)
    -0.5
    ```
    """
    previous, current = ops.ones_like(cos), cos
    if m == 0:
        return previous
    for _ in range(m - 1):
        previous, current = current, 2.0 * cos * current - previous
    return current


def multiplicative_angular_psi(cos, m):
    """ψ(θ) = (−1)^k·cos(mθ) − 2k for θ in [kπ/m, (k+1)π/m] (L-Softmax).

    ψ is continuous, decreasing on [0, π] and equals cos θ for m = 1. The
    interval index k counts the thresholds cos(jπ/m), j = 1..m−1, that cos θ
    lies at or below, so nothing is differentiated through arccos and the
    gradient is the polynomial's, finite everywhere.

    Args:
        cos: float32 tensor of cosines.
        m: Python int ≥ 1.

    Returns:
        float32 tensor of the same shape as `cos`.
    """
    c = ops.clip(cos, -1.0, 1.0)
    k = ops.zeros_like(c)
    for j in range(1, m):
        k = k + ops.cast(c <= math.cos(j * math.pi / m), "float32")
    sign = 1.0 - 2.0 * ops.mod(k, 2.0)
    return sign * chebyshev_cos_multiple(c, m) - 2.0 * k


def annealed_lambda(step, base=1000.0, gamma=0.12, power=1.0, minimum=0.0):
    """λ_t = max(minimum, base·(1 + gamma·t)^(−power)) (SphereFace schedule).

    Args:
        step: number of training steps taken so far (tensor or number).
        base: λ at step 0; default 1000.
        gamma: decay rate γ; default 0.12.
        power: decay power; default 1.
        minimum: floor of λ; default 0.

    Returns:
        float32 scalar tensor.

    Example:

    ```pycon
    >>> round(float(annealed_lambda(1, base=1000.0, gamma=0.12, power=1.0, minimum=5.0)), 2)
    892.86
    ```
    """
    t = ops.cast(step, "float32")
    return ops.maximum(minimum, base * ops.power(1.0 + gamma * t, -power))


def blend_with_lambda(cos, psi, lam):
    """(λ·cos θ + ψ(θ)) / (1 + λ): the annealed target of L-/A-Softmax.

    Args:
        cos: float32 tensor of target cosines.
        psi: float32 tensor ψ(θ) of the same shape (e.g. from
            `multiplicative_angular_psi`).
        lam: λ ≥ 0, a number or a scalar tensor (e.g. from `annealed_lambda`).

    Returns:
        float32 tensor of the shape of `cos`.
    """
    return (lam * cos + psi) / (1.0 + lam)


def adacos_scale(num_classes):
    """The fixed AdaCos scale √2·ln(C − 1) for C ≥ 3 classes (Zhang et al., CVPR 2019).

    It is the scale at which the softmax probability of a sample whose target
    angle is π/4 (and whose other angles are π/2) has its steepest change,
    so the loss still pushes samples that are already well classified.

    Args:
        num_classes: C, an integer ≥ 3 (fewer raise a ValueError).

    Returns:
        A Python float.

    Example:

    ```pycon
    >>> round(adacos_scale(32), 2)   # √2·ln 31
    4.86
    ```
    """
    if num_classes < 3:
        raise ValueError(
            f"The AdaCos scale √2·ln(C − 1) needs at least 3 classes. Received: num_classes={num_classes}"
        )
    return math.sqrt(2.0) * math.log(num_classes - 1)


#: Finite stand-in for −∞ in float32 log-sum-exp masks: exp of it is exactly 0.
MASKED_LOGIT = -1e30

#: Lower bound of the dynamic AdaCos scale; the formula can go to 0 or below
#: when the non-target cosines are all strongly negative (few classes).
ADAPTIVE_SCALE_MINIMUM = 1.0


def adacos_batch_statistics(cos, labels, previous_scale):
    """The per-batch pieces of the dynamic AdaCos scale, before any reduction.

    Args:
        cos: float32 `(batch, classes)` cosines of the batch (used without
            gradient).
        labels: int32 `(batch,)` target classes.
        previous_scale: s_prev, the scale in effect before this batch (a
            number or a scalar tensor).

    Returns:
        `(log_sum, theta)`: float32 `(1,)` log Σ_i Σ_{k≠y_i} exp(s_prev·cos θ_ik)
        and float32 `(batch,)` target angles θ_{i,y_i}. Both are without
        gradient. Batches split over devices concatenate these.
    """
    cos = ops.stop_gradient(cos)
    is_target = ops.expand_dims(labels, -1) == ops.arange(cos.shape[-1], dtype="int32")
    non_target = ops.where(is_target, MASKED_LOGIT, previous_scale * cos)
    log_sum = ops.reshape(ops.logsumexp(non_target), (1,))
    theta = ops.arccos(clamp_cosine(target_values(cos, labels)))
    return log_sum, theta


def adacos_scale_from_statistics(log_sums, theta, non_target_weight=1.0, maximum=None):
    """The dynamic AdaCos scale (Zhang et al., CVPR 2019, eq. 15) from batch statistics.

    `s = ln(B_avg) / cos(min(π/4, θ_med))`, where
    `B_avg = (1/N)·Σ_i Σ_{k≠y_i} exp(s_prev · cos θ_ik)` uses the previous
    scale and θ_med is the median target angle of the N samples. The result
    is capped at `maximum`, then floored at `ADAPTIVE_SCALE_MINIMUM`.

    The cap matters when non-target cosines are large: ln(B_avg) is then
    about s_prev · max cos θ_ik, so with θ_med ≥ π/4 the scale grows by a
    factor √2 · max cos θ_ik per step, and geometrically whenever that
    exceeds 1 (low-dimensional embeddings, or close classes), until it
    overflows. The heads cap it at the fixed AdaCos scale √2·ln(C − 1), the
    formula's value in the paper's analysis when every non-target angle is
    π/2 and the scale it starts from, so the dynamic scale only ever goes
    down from its starting value.

    Args:
        log_sums: float32 `(parts,)` from `adacos_batch_statistics`, one per
            part of the batch.
        theta: float32 `(N,)` target angles of the whole batch.
        non_target_weight: multiplies B_avg; (C − 1)/(k − 1) when the sums
            cover only k of the C classes (Partial FC), so the sum is
            estimated over all non-target classes.
        maximum: optional upper bound of the result.

    Returns:
        float32 scalar tensor.
    """
    batch = ops.sum(ops.ones_like(theta))
    log_b_avg = ops.logsumexp(log_sums) - ops.log(batch) + math.log(non_target_weight)
    scale = log_b_avg / ops.cos(ops.minimum(ops.median(theta), math.pi / 4.0))
    if maximum is not None:
        scale = ops.minimum(scale, maximum)
    return ops.maximum(scale, ADAPTIVE_SCALE_MINIMUM)


def linear_warmup(step, warmup_steps):
    """min(1, step / warmup_steps) as a float32 tensor; 1 when `warmup_steps` is 0.

    Args:
        step: training steps taken so far (tensor or number).
        warmup_steps: Python int ≥ 0, the length of the ramp.

    Returns:
        float32 scalar tensor in `[0, 1]` (for `step` ≥ 0).

    Example:

    ```pycon
    >>> float(linear_warmup(250, 1000))
    0.25
    ```
    """
    if warmup_steps == 0:
        return ops.ones((), "float32")
    return ops.minimum(1.0, ops.cast(step, "float32") / float(warmup_steps))


# The heads that adapt the margin to the sample -------------------------------


def curricular_modulation(cos, threshold, t):
    """CurricularFace's non-target logits (Huang et al., CVPR 2020, eq. 7).

    A cosine above its row's `threshold` cos(θ_y + m) (a hard negative)
    becomes `cos · (t + cos)`, the others stay.

    Args:
        cos: float32 `(batch, classes)`.
        threshold: float32 `(batch,)`, cos(θ_y + m) of each row.
        t: float32 scalar, the running mean of the target cosine, treated
            as a constant.

    Returns:
        float32 `(batch, classes)`.
    """
    return ops.where(cos > ops.expand_dims(threshold, -1), cos * (t + cos), cos)


def magface_margin(norms, lower_norm, upper_norm, lower_margin, upper_margin):
    """MagFace's margin m(a), linear in the clipped norm a ∈ [l_a, u_a] (Meng et al., CVPR 2021).

    `m(a) = (u_m − l_m) / (u_a − l_a) · (a − l_a) + l_m` with
    `a = clip(‖x‖, l_a, u_a)`.

    Args:
        norms: float tensor of embedding norms ‖x‖, any shape.
        lower_norm: l_a, the lower end of the norm range.
        upper_norm: u_a > l_a, the upper end.
        lower_margin: l_m, the margin at l_a.
        upper_margin: u_m, the margin at u_a.

    Returns:
        float32 tensor of the shape of `norms`.
    """
    a = ops.clip(ops.cast(norms, "float32"), lower_norm, upper_norm)
    return (upper_margin - lower_margin) / (upper_norm - lower_norm) * (a - lower_norm) + lower_margin


def magface_regularizer(norms, lower_norm, upper_norm):
    """MagFace's g(a) = 1/a + a/u_a² of the clipped norm, per example.

    Args:
        norms: float tensor of embedding norms ‖x‖, any shape.
        lower_norm: l_a > 0, the lower clip of the norm.
        upper_norm: u_a > l_a, the upper clip.

    Returns:
        float32 tensor of the shape of `norms`.
    """
    a = ops.clip(ops.cast(norms, "float32"), lower_norm, upper_norm)
    return 1.0 / a + a / upper_norm**2


def magface_minimum_lambda(scale, lower_norm, upper_norm, lower_margin, upper_margin):
    """The smallest λ_g for which MagFace's loss has a unique optimum in a (its Theorem).

    The bound is s·k·u_a²·l_a² / (u_a² − l_a²), with k = (u_m − l_m) / (u_a − l_a).

    Args:
        scale: s, the head's scale.
        lower_norm: l_a, the lower end of the norm range.
        upper_norm: u_a > l_a, the upper end.
        lower_margin: l_m, the margin at l_a.
        upper_margin: u_m, the margin at u_a.

    Returns:
        A Python float (for number arguments).

    Example:

    ```pycon
    >>> round(magface_minimum_lambda(64.0, 10.0, 110.0, 0.45, 0.8), 2)   # MagFace's defaults
    22.59
    ```
    """
    k = (upper_margin - lower_margin) / (upper_norm - lower_norm)
    return scale * k * upper_norm**2 * lower_norm**2 / (upper_norm**2 - lower_norm**2)


#: AdaFace clamps cosines to ±(1 − ADAFACE_EPSILON) and the angle to
#: [ADAFACE_EPSILON, π − ADAFACE_EPSILON].
ADAFACE_EPSILON = 1e-3


def adaface_norm_scaler(norms, mean, std, h):
    """AdaFace's ẑ = clip(h · (n − μ) / (σ + ε), −1, 1), ε = 1e-3 (Kim et al., CVPR 2022, eq. 13).

    Args:
        norms: float32 tensor of embedding norms n, any shape.
        mean: μ, the running mean of the norms.
        std: σ, the running standard deviation of the norms.
        h: the concentration, > 0.

    Returns:
        float32 tensor of the shape of `norms`, in `[−1, 1]`.
    """
    return ops.clip(h * (norms - mean) / (std + ADAFACE_EPSILON), -1.0, 1.0)


def adaface_target(cos, margin, norm_scaler):
    """AdaFace's target cosine cos(clip(θ − m·ẑ, ε, π − ε)) − (m + m·ẑ).

    `cos` must already be clamped to ±(1 − ε), so arccos has a finite
    gradient; `margin · norm_scaler` is used as given (the head passes ẑ
    without gradient).

    Args:
        cos: float32 tensor of target cosines, clamped to ±(1 − ε).
        margin: m ≥ 0, a number or a tensor broadcasting against `cos`.
        norm_scaler: ẑ in `[−1, 1]`, the shape of `cos` (from
            `adaface_norm_scaler`).

    Returns:
        float32 tensor of the shape of `cos`.
    """
    theta = ops.arccos(cos)
    angle = ops.clip(theta - margin * norm_scaler, ADAFACE_EPSILON, math.pi - ADAFACE_EPSILON)
    return ops.cos(angle) - (margin + margin * norm_scaler)


def rank_matched(values, keys):
    """`values` reordered so the largest goes where `keys` is smallest, `(n,)`.

    The i-th smallest key gets the i-th largest value: ElasticFace+'s rule
    (a larger margin for a sample whose target cosine is smaller). Without
    gradient through the ordering.

    Args:
        values: 1-D tensor `(n,)`, e.g. drawn margins.
        keys: 1-D tensor `(n,)`, e.g. target cosines.

    Returns:
        tensor `(n,)` holding the entries of `values`.

    Example:

    ```pycon
    >>> keras.ops.convert_to_numpy(rank_matched(np.array([0.1, 0.3, 0.2]), np.array([0.9, 0.5, 0.7])))
    array([0.1, 0.3, 0.2])
    ```
    """
    keys = ops.convert_to_tensor(keys)  # the torch backend's stop_gradient takes tensors only
    key_rank = ops.argsort(ops.argsort(ops.stop_gradient(keys)))  # 0 for the smallest key
    descending = ops.flip(ops.sort(values), axis=0)
    return ops.take(descending, key_rank)


def unbiased_std(values):
    """The sample standard deviation of a 1-D tensor, with n − 1 in the denominator.

    Args:
        values: float tensor `(n,)`, n ≥ 2.

    Returns:
        scalar tensor.
    """
    n = ops.cast(ops.shape(values)[0], "float32")
    mean = ops.mean(values)
    return ops.sqrt(ops.sum(ops.square(values - mean)) / (n - 1.0))
