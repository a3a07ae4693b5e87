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


def test_roc_figure_log_far_axis(tmp_path, rng):
    from keras_margin.evaluation import verification_report

    a, b = rng.normal(size=(2, 400, 8))
    same = rng.random(400) < 0.5
    b[same] = a[same] + 0.7 * rng.normal(size=(same.sum(), 8))
    report = verification_report(a, b, same)
    figure = plot.roc_figure({"model A": report, "model B": verification_report(a, b[::-1], same)})
    ax = figure.axes[0]
    assert ax.get_xscale() == "log" and len(ax.lines) == 2
    assert ax.get_xlim()[0] == pytest.approx(1 / (~same).sum())  # the smallest measurable FAR
    assert "AUC" in ax.get_legend().get_texts()[0].get_text()
    path = plot.save_figure(plot.roc_figure(report), tmp_path / "roc.png")
    assert len(path.read_bytes()) > 10_000


def test_pair_angle_histogram(tmp_path, rng):
    a, b = rng.normal(size=(2, 300, 8))
    same = np.arange(300) < 100
    b[same] = a[same] + 0.2 * rng.normal(size=(100, 8))
    figure = plot.pair_angle_histogram(a, b, same, bins=30, threshold=0.5)
    ax = figure.axes[0]
    assert len(ax.patches) == 60  # two histograms of 30 bars
    heights = np.array([p.get_height() for p in ax.patches])
    centers = np.array([p.get_x() + p.get_width() / 2 for p in ax.patches])
    mean_same = np.average(centers[:30], weights=heights[:30])
    mean_different = np.average(centers[30:], weights=heights[30:])
    assert mean_same < 30 < 75 < mean_different  # near pairs at small angles, random pairs near 90°
    assert ax.lines[0].get_xdata()[0] == pytest.approx(60.0)  # arccos(0.5)
    assert len(plot.save_figure(figure, tmp_path / "angles.png").read_bytes()) > 10_000


def test_quality_filtered_figure(tmp_path):
    curve = {"fractions": np.array([0.0, 0.5]), "fnmr": np.array([0.2, 0.1]), "fmr": 1e-3}
    figure = plot.quality_filtered_figure({"MagFace": curve, "ArcFace": dict(curve, fnmr=np.array([0.2, 0.2]))})
    ax = figure.axes[0]
    assert [line.get_label() for line in ax.lines] == ["MagFace", "ArcFace"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [0.2, 0.1])
    assert "FMR = 0.001" in ax.get_ylabel()
    assert len(plot.save_figure(figure, tmp_path / "erc.png").read_bytes()) > 5_000
