"""keras_margin.plot draws real figures (checked through the PNGs and the artists they hold)."""

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="keras_margin.plot needs matplotlib (the examples / test extra)")

from keras_margin import plot  # noqa: E402


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("normalize", [False, True])
def test_feature_scatter_writes_a_png(tmp_path, rng, dim, normalize):
    embeddings = rng.normal(size=(300, dim))
    labels = rng.integers(0, 5, size=300)
    kernel = rng.normal(size=(dim, 5))
    figure = plot.feature_scatter(embeddings, labels, kernel, normalize=normalize, title="features")
    ax = figure.axes[0]
    assert len(ax.collections[0].get_offsets()) == 300  # every point drawn
    assert len(ax.lines) == 5 + (normalize and dim == 2)  # one line per class weight (+ the unit circle)
    path = plot.save_figure(figure, tmp_path / "features.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_feature_scatter_projects_onto_the_circle(rng):
    embeddings = rng.normal(size=(50, 2)) * 7
    figure = plot.feature_scatter(embeddings, np.zeros(50, int), normalize=True)
    points = np.asarray(figure.axes[0].collections[0].get_offsets())
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0)


def test_feature_scatter_subsamples_and_rejects_bad_shapes(rng):
    figure = plot.feature_scatter(rng.normal(size=(1000, 2)), rng.integers(0, 3, 1000), max_points=100)
    assert len(figure.axes[0].collections[0].get_offsets()) == 100
    with pytest.raises(ValueError, match=r"\(n, 2\) or \(n, 3\)"):
        plot.feature_scatter(rng.normal(size=(10, 4)), np.zeros(10, int))
