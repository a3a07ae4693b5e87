"""Float64 NumPy references written from the papers' formulas.

Nothing here imports keras_margin: these are the independent implementations
the tests compare the package against. θ is computed with arccos and ψ from
its interval index directly, unlike the package (trig identities, Chebyshev
polynomials, threshold counts).
"""

import numpy as np

# The package documents that cosines are clamped to [-1 + 1e-6, 1 - 1e-6]
# before the angular margin and the result shifted back by (c - clamped c).
CLAMP = 1e-6


def normalize(v, axis):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=axis, keepdims=True)


def cosines(x, kernel, num_subcenters=1):
    """cos θ between rows of x and columns of kernel, max over sub-centers."""
    cos = normalize(x, 1) @ normalize(kernel, 0)
    batch, columns = cos.shape
    return cos.reshape(batch, columns // num_subcenters, num_subcenters).max(axis=2)


def combined_target(c, m1, m2, m3, fallback):
    """cos(m1·θ + m2) − m3 with the documented rule where m1·θ + m2 > π."""
    clamped = np.clip(c, -1 + CLAMP, 1 - CLAMP)
    theta = np.arccos(clamped)
    formula = np.cos(m1 * theta + m2) - m3 + (c - clamped)
    theta_limit = (np.pi - m2) / m1
    valid = theta < theta_limit
    if fallback == "none":
        return formula
    if fallback == "easy":
        return np.where(valid & (theta < np.pi / 2), formula, c)
    if fallback == "insightface":
        return np.where(valid, formula, c - m2 * np.sin(m2) - m3)
    if fallback == "continuous":
        # value of the formula at θ_limit is cos(π) − m3 = −1 − m3; continue
        # with slope 1 in cos θ from that point.
        return np.where(valid, formula, -1 - m3 + (c - np.cos(theta_limit)))
    raise ValueError(fallback)


def psi(c, m):
    """ψ(θ) = (−1)^k cos(mθ) − 2k, θ ∈ [kπ/m, (k+1)π/m]."""
    theta = np.arccos(np.clip(c, -1, 1))
    k = np.minimum(np.floor(theta * m / np.pi), m - 1)
    return (-1.0) ** k * np.cos(m * theta) - 2 * k


def annealed_lambda(t, base, gamma, power, minimum):
    return max(minimum, base * (1 + gamma * t) ** (-power))


def _replace_target(values, labels, targets):
    out = np.array(values, np.float64)
    out[np.arange(len(labels)), labels] = targets
    return out


def arc_logits(x, kernel, labels, scale, margin, fallback="continuous", num_subcenters=1):
    return combined_logits(x, kernel, labels, scale, 1.0, margin, 0.0, fallback, num_subcenters)


def cos_logits(x, kernel, labels, scale, margin, num_subcenters=1):
    cos = cosines(x, kernel, num_subcenters)
    if labels is None:
        return scale * cos
    target = cos[np.arange(len(labels)), labels] - margin
    return scale * _replace_target(cos, labels, target)


def combined_logits(x, kernel, labels, scale, m1, m2, m3, fallback="continuous", num_subcenters=1):
    cos = cosines(x, kernel, num_subcenters)
    if labels is None:
        return scale * cos
    c_y = cos[np.arange(len(labels)), labels]
    return scale * _replace_target(cos, labels, combined_target(c_y, m1, m2, m3, fallback))


def sphere_logits(x, kernel, labels, margin, lam, num_subcenters=1):
    """A-Softmax: ‖x‖ cos θ_j; target ‖x‖ (λ cos θ + ψ) / (1 + λ)."""
    x = np.asarray(x, np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    cos = cosines(x, kernel, num_subcenters)
    if labels is None:
        return norm * cos
    c_y = cos[np.arange(len(labels)), labels]
    target = (lam * c_y + psi(c_y, margin)) / (1 + lam)
    return norm * _replace_target(cos, labels, target)


def large_logits(x, kernel, labels, margin, lam):
    """L-Softmax: W_jᵀx; target ‖W_y‖‖x‖ (λ cos θ + ψ) / (1 + λ)."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    plain = x @ kernel
    if labels is None:
        return plain
    w_y = kernel[:, labels].T
    x_norm = np.linalg.norm(x, axis=1)
    w_norm = np.linalg.norm(w_y, axis=1)
    c_y = np.sum(x * w_y, axis=1) / (x_norm * w_norm)
    target = x_norm * w_norm * (lam * c_y + psi(c_y, margin)) / (1 + lam)
    return _replace_target(plain, labels, target)


# --- the adaptive heads: CurricularFace, MagFace, AdaFace, ElasticFace --------


def curricular_logits(x, kernel, labels, scale, margin, t, num_subcenters=1):
    """CurricularFace: target cos(θ_y + m) (insightface's rule past π − m); hard negatives c·(t + c)."""
    cos = cosines(x, kernel, num_subcenters)
    out = np.array(cos)
    for i, y in enumerate(labels):
        c_y = cos[i, y]
        clamped = np.clip(c_y, -1 + CLAMP, 1 - CLAMP)
        hard = np.cos(np.arccos(clamped) + margin) + (c_y - clamped)
        for j in range(cos.shape[1]):
            if j != y and cos[i, j] > hard:
                out[i, j] = cos[i, j] * (t + cos[i, j])
        out[i, y] = combined_target(c_y, 1.0, margin, 0.0, "insightface")
    return scale * out


def magface_margin(norm, lower_norm, upper_norm, lower_margin, upper_margin):
    a = min(max(norm, lower_norm), upper_norm)
    return (upper_margin - lower_margin) / (upper_norm - lower_norm) * (a - lower_norm) + lower_margin


def magface_logits(x, kernel, labels, scale, lower_norm, upper_norm, lower_margin, upper_margin, easy_margin):
    """MagFace: target cos(θ_y + m(a)), a the clipped norm; easy margin: only where cos θ_y > 0."""
    cos = cosines(x, kernel)
    out = np.array(cos)
    for i, y in enumerate(labels):
        m = magface_margin(np.linalg.norm(np.asarray(x[i], np.float64)), lower_norm, upper_norm, lower_margin,
                           upper_margin)
        out[i, y] = combined_target(cos[i, y], 1.0, m, 0.0, "easy" if easy_margin else "insightface")
    return scale * out


def magface_regularizer(x, lower_norm, upper_norm, lambda_g):
    """λ_g · mean over the batch of 1/a + a/u_a²."""
    values = []
    for row in np.asarray(x, np.float64):
        a = min(max(np.linalg.norm(row), lower_norm), upper_norm)
        values.append(1 / a + a / upper_norm**2)
    return lambda_g * np.mean(values)


class AdaFaceReference:
    """AdaFace with its running norm statistics (official values: start 20 / 100, rate 0.01)."""

    EPS = 1e-3

    def __init__(self, scale, margin, h, momentum):
        self.scale, self.margin, self.h, self.momentum = scale, margin, h, momentum
        self.mean, self.std = 20.0, 100.0

    def logits(self, x, kernel, labels, training):
        cos = np.clip(cosines(x, kernel), -1 + self.EPS, 1 - self.EPS)
        norms = np.clip(np.linalg.norm(np.asarray(x, np.float64), axis=1), 0.001, 100)
        if training:
            rate = 1 - self.momentum
            self.mean = rate * norms.mean() + self.momentum * self.mean
            self.std = rate * norms.std(ddof=1) + self.momentum * self.std
        out = np.array(cos)
        for i, y in enumerate(labels):
            z = np.clip(self.h * (norms[i] - self.mean) / (self.std + self.EPS), -1, 1)
            angle = np.clip(np.arccos(cos[i, y]) - self.margin * z, self.EPS, np.pi - self.EPS)
            out[i, y] = np.cos(angle) - (self.margin + self.margin * z)
        return self.scale * out


def numerical_gradient(function, value, step=1e-6):
    """Central differences of a scalar function of a float64 array."""
    gradient = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        up, down = value.copy(), value.copy()
        up[index] += step
        down[index] -= step
        gradient[index] = (function(up) - function(down)) / (2 * step)
    return gradient


def rotate_towards(w, theta, rng):
    """A unit vector at angle θ from the unit direction of w."""
    w = w / np.linalg.norm(w)
    u = rng.normal(size=w.shape)
    u -= (u @ w) * w
    u /= np.linalg.norm(u)
    return np.cos(theta) * w + np.sin(theta) * u


# --- metric losses: brute force over pairs and triplets -------------------


def distance(a, b, kind):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if kind == "squared_euclidean":
        return float(np.sum((a - b) ** 2))
    if kind == "euclidean":
        return float(np.sqrt(np.sum((a - b) ** 2)))
    if kind == "cosine":
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na == 0 or nb == 0:
            return 1.0
        return float(1.0 - a @ b / (na * nb))
    raise ValueError(kind)


def contrastive(labels, x, margin, kind, weights=None, reduce="mean"):
    n = len(labels)
    weights = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    total = count = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d = distance(x[i], x[j], kind)
            term = 0.5 * d**2 if labels[i] == labels[j] else 0.5 * max(0.0, margin - d) ** 2
            total += weights[i] * weights[j] * term
            count += weights[i] * weights[j]
    return total if reduce == "sum" else (total / count if count > 0 else 0.0)


def triplet(labels, x, margin, mining, kind, normalize, soft, weights=None, reduce="mean"):
    n = len(labels)
    x = np.asarray(x, np.float64)
    if normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.where(norms > 0, x / np.where(norms > 0, norms, 1), 0)
    weights = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    hinge = (lambda z: np.logaddexp(0.0, z)) if soft else (lambda z: max(0.0, z))
    d = np.array([[0.0 if i == j else distance(x[i], x[j], kind) for j in range(n)] for i in range(n)])
    positives = {a: [p for p in range(n) if p != a and labels[p] == labels[a]] for a in range(n)}
    negatives = {a: [m for m in range(n) if labels[m] != labels[a]] for a in range(n)}
    total = count = 0.0
    for a in range(n):
        if mining == "batch_hard":
            if positives[a] and negatives[a]:
                z = max(d[a, p] for p in positives[a]) - min(d[a, m] for m in negatives[a]) + margin
                total += weights[a] * hinge(z)
                count += weights[a]
            continue
        for p in positives[a]:
            if not negatives[a]:
                continue
            if mining == "semi_hard":
                farther = [d[a, m] for m in negatives[a] if d[a, m] > d[a, p]]
                d_an = min(farther) if farther else max(d[a, m] for m in negatives[a])
                total += weights[a] * weights[p] * hinge(d[a, p] - d_an + margin)
                count += weights[a] * weights[p]
            elif mining == "batch_all":
                for m in negatives[a]:
                    loss = hinge(d[a, p] - d[a, m] + margin)
                    w = weights[a] * weights[p] * weights[m]
                    total += w * loss
                    count += w * (loss > 0)
    return total if reduce == "sum" else (total / count if count > 0 else 0.0)
