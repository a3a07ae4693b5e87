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


def rotate_towards(w, theta, rng):
    """A unit vector at angle θ from the unit direction of w."""
    w = w / np.linalg.norm(w)
    u = rng.normal(size=w.shape)
    u -= (u @ w) * w
    u /= np.linalg.norm(u)
    return np.cos(theta) * w + np.sin(theta) * u
