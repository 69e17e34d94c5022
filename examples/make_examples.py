"""Write the small data files the README's command-line examples use.

Run from the repository root: ``.venv/bin/python examples/make_examples.py``. The files
are committed; this script is how they were made (deterministic, seed 0).

``data.csv``
    900 rows, columns ``x`` and ``y``: three Gaussian clusters of different shapes and
    spreads (one elongated, one wide, one tight) -- what k-means gets wrong.
``photo.png``
    A 120 x 160 RGB picture: sky, sun, hills and a field, with a little sensor noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def clusters(rng: np.random.Generator) -> np.ndarray:
    elongated = rng.multivariate_normal([0.0, 0.0], [[6.0, 2.8], [2.8, 1.6]], size=400)
    wide = rng.multivariate_normal([7.0, 6.0], [[4.0, 0.0], [0.0, 4.0]], size=300)
    tight = rng.multivariate_normal([7.0, -2.0], [[0.2, 0.0], [0.0, 0.2]], size=200)
    return np.vstack([elongated, wide, tight])


def photo(rng: np.random.Generator) -> np.ndarray:
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    image = np.zeros((h, w, 3))
    sky = np.array([90.0, 150.0, 230.0]) + (yy[..., None] / h) * np.array([60.0, 50.0, 20.0])
    image[:] = sky
    sun = (yy - 25) ** 2 + (xx - 120) ** 2 < 14**2
    image[sun] = [250, 220, 80]
    hills = yy > 70 + 12 * np.sin(xx / 18.0)
    image[hills] = [60, 120, 50]
    field = yy > 95
    image[field] = [170, 140, 70]
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def main() -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    data = clusters(rng)
    np.savetxt(HERE / "data.csv", data, fmt="%.5f", delimiter=",", header="x,y", comments="")
    Image.fromarray(photo(rng)).save(HERE / "photo.png", optimize=True)


if __name__ == "__main__":
    main()
