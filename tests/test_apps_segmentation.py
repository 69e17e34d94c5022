"""Image segmentation: known regions, the real photo scikit-learn ships, image files, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.datasets import load_sample_image
from sklearn.metrics import adjusted_rand_score

import gmmkit
from _helpers import assert_model_structure
from gmmkit.apps.segmentation import pixel_features


def three_region_image(dtype=np.uint8, seed: int = 0):
    """A 60 x 90 image: three vertical bands of distinct colours plus noise."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(3), 30)[None, :].repeat(60, axis=0)
    colours = np.array([[200, 40, 40], [40, 180, 60], [30, 60, 210]], dtype=float)
    image = colours[truth] + rng.normal(0, 8, size=(60, 90, 3))
    image = np.clip(image, 0, 255)
    if dtype == np.uint8:
        return np.rint(image).astype(np.uint8), truth
    return (image / 255).astype(dtype), truth


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_recovers_known_regions(dtype):
    image, truth = three_region_image(dtype)
    result = gmmkit.segment_image(image, 3, random_state=0)
    assert result.labels.shape == (60, 90)
    assert adjusted_rand_score(truth.ravel(), result.labels.ravel()) == 1.0
    assert result.image.shape == image.shape
    assert result.image.dtype == image.dtype
    # every pixel takes its component's mean colour, i.e. the region's mean colour
    for k in range(3):
        region = result.labels == k
        expected = image[region].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(result.image[region].astype(np.float64),
                                   np.broadcast_to(expected, (region.sum(), 3)),
                                   atol=0.51 if dtype == np.uint8 else 1e-5)
    assert result.n_fit_pixels == 60 * 90


def test_grey_images():
    rng = np.random.default_rng(2)
    _, truth = three_region_image()
    levels = np.array([30.0, 120.0, 220.0])
    grey = np.rint(np.clip(levels[truth] + rng.normal(0, 8, truth.shape), 0, 255))
    grey = grey.astype(np.uint8)
    result = gmmkit.segment_image(grey, 3, random_state=0)
    assert result.labels.shape == grey.shape
    assert result.image.shape == grey.shape and result.image.dtype == np.uint8
    assert adjusted_rand_score(truth.ravel(), result.labels.ravel()) == 1.0
    single = gmmkit.segment_image(grey[:, :, None], 3, random_state=0)
    assert single.image.shape == (60, 90, 1)
    np.testing.assert_array_equal(single.labels, result.labels)


def test_pixel_positions_give_spatially_coherent_segments():
    # one colour distribution everywhere: only position can split left from right
    rng = np.random.default_rng(1)
    image = np.clip(rng.normal(0.5, 0.1, size=(40, 80, 3)), 0, 1)
    left = np.zeros((40, 80), dtype=int)
    left[:, 40:] = 1
    colour_only = gmmkit.segment_image(image, 2, covariance_type="diag", random_state=0)
    spatial = gmmkit.segment_image(image, 2, covariance_type="diag", spatial_weight=1.0,
                                   random_state=0)
    assert adjusted_rand_score(left.ravel(), spatial.labels.ravel()) > 0.9
    assert adjusted_rand_score(left.ravel(), colour_only.labels.ravel()) < 0.1
    assert spatial.model.means_.shape == (2, 5)
    features = pixel_features(image, 1.0)
    np.testing.assert_allclose(features[-1, 3:], [39 / 80, 79 / 80], rtol=1e-6)


@pytest.fixture(scope="module")
def china():
    return load_sample_image("china.jpg")


@pytest.fixture(scope="module")
def china_results(china):
    return {k: gmmkit.segment_image(china, k, random_state=0) for k in (2, 3, 7, 20)}


def test_china_photo_at_several_k(china, china_results):
    errors = []
    for k, result in china_results.items():
        assert result.labels.shape == (427, 640)
        assert result.image.shape == china.shape and result.image.dtype == np.uint8
        assert set(np.unique(result.labels)) == set(range(k))
        np.testing.assert_array_equal(result.image, result.colors[result.labels])
        assert result.model.converged_
        errors.append(np.abs(result.image.astype(float) - china).mean())
    # more components reproduce the photo better
    assert all(a > b for a, b in itertools.pairwise(errors))
    assert errors[-1] < 0.5 * errors[0]


def test_china_components_are_the_colour_means_of_their_pixels(china, china_results):
    result = china_results[7]
    flat = china.reshape(-1, 3).astype(np.float64)
    labels = result.labels.ravel()
    proba = result.model.predict_proba(pixel_features(china))
    weighted_means = proba.T @ flat / proba.sum(axis=0)[:, None]
    # EM's fixed point: each mean is the responsibility-weighted mean of all pixels
    np.testing.assert_allclose(result.model.means_ * 255, weighted_means, atol=0.5)
    assert np.bincount(labels, minlength=7).min() > 0


def test_fit_on_a_pixel_subsample_labels_every_pixel(china, china_results):
    result = gmmkit.segment_image(china, 7, max_fit_pixels=20_000, random_state=0)
    assert result.n_fit_pixels == 20_000
    assert result.labels.shape == (427, 640)
    np.testing.assert_array_equal(
        result.labels.ravel(), result.model.predict(pixel_features(china))
    )
    full_error = np.abs(china_results[7].image.astype(float) - china).mean()
    sub_error = np.abs(result.image.astype(float) - china).mean()
    assert sub_error < 1.25 * full_error


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_image_file_round_trip(tmp_path, mode):
    image, _ = three_region_image()
    if mode == "L":
        image = image[:, :, 0]
    elif mode == "RGBA":
        image = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    path = tmp_path / "image.png"
    gmmkit.write_image(path, image)
    np.testing.assert_array_equal(gmmkit.read_image(path), image)
    result = gmmkit.segment_image(gmmkit.read_image(path), 3, random_state=0)
    gmmkit.write_image(tmp_path / "segmented.png", result.image)
    np.testing.assert_array_equal(gmmkit.read_image(tmp_path / "segmented.png"), result.image)


def test_float_images_are_written_as_8_bit(tmp_path):
    image, _ = three_region_image(np.float64)
    gmmkit.write_image(tmp_path / "f.png", image)
    np.testing.assert_array_equal(gmmkit.read_image(tmp_path / "f.png"),
                                  np.rint(image * 255).astype(np.uint8))


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros(10, np.uint8), ValueError, "rank 1"),
        (np.zeros((2, 3, 4, 3), np.uint8), ValueError, "rank 4"),
        (np.zeros((0, 5, 3), np.uint8), ValueError, "empty"),
        (np.zeros((4, 5, 3), np.int8), TypeError, "dtype"),
        (np.zeros((4, 5, 3), np.complex128), TypeError, "dtype"),
        (np.zeros((4, 5, 3), bool), TypeError, "dtype"),
        (np.full((4, 5, 3), np.nan), ValueError, "NaN"),
    ],
)
def test_bad_images(image, error, match):
    with pytest.raises(error, match=match):
        gmmkit.segment_image(image, 2)


def test_bad_parameters():
    image, _ = three_region_image()
    with pytest.raises(ValueError, match="larger than the number of samples"):
        gmmkit.segment_image(image[:2, :2], 5)
    with pytest.raises(ValueError, match="larger than the number of samples"):
        gmmkit.segment_image(image, 5, max_fit_pixels=4)
    with pytest.raises(ValueError, match="n_components"):
        gmmkit.segment_image(image, 0)
    with pytest.raises(TypeError, match="n_components"):
        gmmkit.segment_image(image, 2.5)
    with pytest.raises(ValueError, match="spatial_weight"):
        gmmkit.segment_image(image, 2, spatial_weight=-1.0)
    with pytest.raises(ValueError, match="max_fit_pixels"):
        gmmkit.segment_image(image, 2, max_fit_pixels=0)
    with pytest.raises(ValueError, match="shape"):
        gmmkit.write_image("x.png", np.zeros((4, 5, 5), np.uint8))  # (H, W, 2) is grey + alpha


@pytest.mark.parametrize("covariance_type", ["VEV", "EEI"])
def test_an_mclust_model_end_to_end(covariance_type):
    image, truth = three_region_image()
    result = gmmkit.segment_image(image, 3, covariance_type=covariance_type, random_state=0)
    assert result.model.covariance_type == covariance_type
    assert_model_structure(result.model)
    assert adjusted_rand_score(truth.ravel(), result.labels.ravel()) == 1.0
    assert result.image.shape == image.shape and result.image.dtype == np.uint8
