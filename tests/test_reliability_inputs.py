"""Every input path gets the same checks: CSV/text files (in memory and streamed),
streamed arrays and data frames, and images of every common Pillow mode."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gmmkit
from _helpers import run_cli
from gmmkit.data import DataFileError, read_table

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

rng = np.random.default_rng(0)
BLOBS = np.vstack([rng.normal(0.0, 1.0, (60, 2)), rng.normal(8.0, 1.0, (60, 2))])
FAST = {"init_params": "kmeans", "max_iter": 20, "random_state": 0, "n_jobs": 1}


def _csv_text(X: np.ndarray = BLOBS, header: str | None = "a,b") -> str:
    lines = [] if header is None else [header]
    lines += [",".join(f"{v:.6f}" for v in row) for row in X]
    return "\n".join(lines) + "\n"


def _streamed(path: Path, columns: Any = None) -> np.ndarray:
    source = gmmkit.read_csv(path, columns)
    return np.concatenate(list(source.blocks(7)))


def _both_fail(path: Path, columns: Any = None) -> str:
    """read_table and a streaming fit on read_csv fail with the same DataFileError."""
    with pytest.raises(DataFileError) as in_memory:
        read_table(path, columns)
    with pytest.raises(DataFileError) as streamed:
        gmmkit.GaussianMixture(2, **FAST).fit(gmmkit.read_csv(path, columns))
    assert str(in_memory.value) == str(streamed.value)
    assert str(path) in str(in_memory.value)
    return str(in_memory.value)


# ----------------------------------------------------------------------------- CSV
@pytest.mark.parametrize("columns", [None, ["a", "b"], ["b"]])
def test_row_with_an_extra_field_is_an_error_naming_its_line(
    tmp_path: Path, columns: Any
) -> None:
    """Also with a column subset, where numpy.loadtxt(usecols=...) drops extras silently."""
    text = _csv_text().splitlines()
    text[3] += ",99"
    path = tmp_path / "extra.csv"
    path.write_text("\n".join(text) + "\n")
    message = _both_fail(path, columns)
    assert "line 4 has 3 fields, expected 2" in message


def test_row_with_a_missing_field_is_an_error_naming_its_line(tmp_path: Path) -> None:
    text = _csv_text().splitlines()
    text[50] = text[50].split(",")[0]
    path = tmp_path / "missing.csv"
    path.write_text("\n".join(text) + "\n")
    assert "line 51 has 1 field, expected 2" in _both_fail(path)


def test_duplicate_column_names_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(_csv_text(header="a,a"))
    message = _both_fail(path)
    assert "column 'a' twice" in message
    with pytest.raises(DataFileError, match="column 'a' twice"):
        gmmkit.read_csv(path)  # at once, before any pass


def test_cli_rejects_duplicate_column_names(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(_csv_text(header="a,a"))
    model = tmp_path / "m.gmm"
    gmmkit.GaussianMixture(2, **FAST).fit(BLOBS).save(model)
    for args in (("fit", path, "-k", "2", "-o", tmp_path / "out.gmm"), ("predict", model, path)):
        result = run_cli(*args)
        assert result.returncode != 0, result.stdout
        assert "column 'a' twice" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.gmm").exists()


@pytest.mark.parametrize("header", ["a,b", None])
def test_byte_order_mark_is_skipped(tmp_path: Path, header: str | None) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text(_csv_text(header=header))
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    expected, names = read_table(plain)
    got, bom_names = read_table(bom)
    np.testing.assert_array_equal(got, expected)
    assert bom_names == names == (None if header is None else ["a", "b"])
    assert len(got) == len(BLOBS)  # the first line is data (or the header), not lost
    np.testing.assert_array_equal(_streamed(bom), expected)
    source = gmmkit.read_csv(bom)
    assert source.feature_names == (None if header is None else ("a", "b"))
    if header is not None:
        np.testing.assert_array_equal(_streamed(bom, ["a"]), expected[:, :1])


@pytest.mark.parametrize("where", ["header", "data", "unselected column"])
def test_latin1_file_is_a_clean_error(tmp_path: Path, where: str) -> None:
    path = tmp_path / "latin.csv"
    header = "café,b" if where == "header" else "a,b"
    lines = _csv_text(header=header).splitlines()
    if where == "data":
        lines[30] = lines[30].split(",")[0] + ",é"
    if where == "unselected column":
        lines = ["a,b,note"] + [line + ",ok" for line in lines[1:]]
        lines[30] = lines[30][: -len("ok")] + "déjà"
    data = ("\n".join(lines) + "\n").encode("latin-1")
    path.write_bytes(data)
    offset = data.index(b"\xe9")
    columns = ["a", "b"] if where == "unselected column" else None
    for reader in (lambda: read_table(path, columns), lambda: _streamed(path, columns)):
        with pytest.raises(DataFileError) as error:
            reader()
        assert not isinstance(error.value, UnicodeDecodeError)
        assert str(error.value) == (
            f"{path} is not UTF-8 text (byte 0xe9 at offset {offset}); convert it to UTF-8"
        )


def test_bad_cells_give_the_same_error_on_fit_and_predict(tmp_path: Path) -> None:
    model = gmmkit.GaussianMixture(2, **FAST).fit(BLOBS)
    cases = {
        "word": ("abc", "line 41, column 'b' has 'abc', not a number"),
        "empty": ("", "line 41, column 'b' is empty"),
        "nan": ("nan", "line 41, column 'b' is 'nan' (NaN and infinite values"),
        "inf": ("-inf", "line 41, column 'b' is '-inf' (NaN and infinite values"),
    }
    for name, (cell, expected) in cases.items():
        lines = _csv_text().splitlines()
        lines[40] = lines[40].split(",")[0] + "," + cell
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n")
        assert expected in _both_fail(path), name
        for method in (model.predict, model.score_samples):
            with pytest.raises(DataFileError, match=expected.replace("(", r"\(")):
                method(gmmkit.read_csv(path))


LAYOUTS = {
    "comma": ("t.csv", "x,y\n1,2\n3.5,-4e2\n"),
    "comments and blanks": ("t.csv", "# made by hand\nx,y\n\n1,2 # first\n# gap\n3.5,-4e2\n"),
    "quoted": ("t.csv", '"x","y"\n"1",2\r\n3.5,"-4e2"\r\n'),
    "padded": ("t.csv", "x , y\n 1 ,2\n3.5,\t-4e2 \n"),
    "semicolon": ("t.csv", "x;y\n1;2\n3.5;-4e2\n"),
    "tab": ("t.tsv", "x\ty\n1\t2\n3.5\t-4e2\n"),
    "blanks": ("t.txt", "  1   2\n3.5 \t -4e2\n"),
    "no header": ("t.csv", "1,2\n3.5,-4e2\n"),
    "one column": ("t.csv", "x\n1\n3.5\n"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_read_table_and_read_csv_agree(tmp_path: Path, layout: str) -> None:
    name, text = LAYOUTS[layout]
    path = tmp_path / name
    path.write_bytes(text.encode())
    data, names = read_table(path)
    expected = np.array([[1.0, 2.0], [3.5, -400.0]])[:, : data.shape[1]]
    np.testing.assert_array_equal(data, expected)
    np.testing.assert_array_equal(_streamed(path), data)
    source = gmmkit.read_csv(path)
    assert (list(source.feature_names) if source.feature_names else None) == names
    packed = tmp_path / (name + ".gz")
    packed.write_bytes(gzip.compress(text.encode()))
    np.testing.assert_array_equal(read_table(packed)[0], data)
    np.testing.assert_array_equal(_streamed(packed), data)


def test_valid_file_gives_identical_fits(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("id,a,b\n" + "".join(
        f"r{i},{x:.17g},{y:.17g}\n" for i, (x, y) in enumerate(BLOBS)
    ))
    data, names = read_table(path, ["a", "b"])
    assert names == ["a", "b"]
    np.testing.assert_array_equal(data, BLOBS)
    in_memory = gmmkit.GaussianMixture(2, **FAST).fit(data)
    streamed = gmmkit.GaussianMixture(2, **FAST).fit(gmmkit.read_csv(path, ["a", "b"]))
    np.testing.assert_allclose(streamed.means_, in_memory.means_, rtol=1e-12)


# ----------------------------------------------------------------------------- streams
def _in_memory_message(X: np.ndarray) -> str:
    with pytest.raises(ValueError) as error:
        gmmkit.GaussianMixture(2, **FAST).fit(X)
    return str(error.value)


BAD_VALUES = {
    "nan": (np.nan, "contains NaN"),
    "inf": (np.inf, "contains infinity"),
    "huge": (-1e200, "their squares would overflow float64"),
}


@pytest.mark.parametrize("bad", list(BAD_VALUES))
def test_memmap_gets_the_in_memory_checks(tmp_path: Path, bad: str) -> None:
    value, phrase = BAD_VALUES[bad]
    X = BLOBS.copy()
    X[77, 1] = value
    assert phrase in _in_memory_message(X)
    np.save(tmp_path / "x.npy", X)
    model = gmmkit.GaussianMixture(2, **FAST).fit(BLOBS)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    unfitted = gmmkit.GaussianMixture(2, chunk_rows=16, **FAST)
    for action in (unfitted.fit, model.predict, model.score_samples, model.predict_proba):
        with pytest.raises(ValueError, match=phrase) as error:
            action(mm)
        assert "row 77" in str(error.value)
    assert not hasattr(unfitted, "means_")


def test_float32_memmap_uses_the_float32_limit(tmp_path: Path) -> None:
    X = BLOBS.astype(np.float32)
    X[5, 0] = 1e20  # fine in float64, its square overflows float32 sums
    assert "overflow float32" in _in_memory_message(X)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match=r"overflow float32.*or pass float64 data"):
        gmmkit.GaussianMixture(2, **FAST).fit(np.load(tmp_path / "x.npy", mmap_mode="r"))


def test_csv_source_huge_values_and_chunk_factories(tmp_path: Path) -> None:
    X = BLOBS.copy()
    X[90, 0] = 1e160
    path = tmp_path / "huge.csv"
    path.write_text(_csv_text(X))
    with pytest.raises(ValueError, match="their squares would overflow float64"):
        gmmkit.GaussianMixture(2, **FAST).fit(gmmkit.read_csv(path))
    model = gmmkit.GaussianMixture(2, **FAST).fit(BLOBS)
    with pytest.raises(ValueError, match=r"contains NaN \(first at row 61\)"):
        Y = BLOBS.copy()
        Y[61, 0] = np.nan
        model.predict(lambda: iter([Y[:50], Y[50:]]))


def test_empty_and_wrong_width_streams(tmp_path: Path) -> None:
    model = gmmkit.GaussianMixture(2, **FAST).fit(BLOBS)
    np.save(tmp_path / "empty.npy", np.empty((0, 2)))
    for action in (model.predict, gmmkit.GaussianMixture(2, **FAST).fit):
        with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\)"):
            action(np.load(tmp_path / "empty.npy", mmap_mode="r"))
    (tmp_path / "header.csv").write_text("a,b\n# nothing yet\n")
    with pytest.raises(DataFileError, match="has no data rows"):
        model.predict(gmmkit.read_csv(tmp_path / "header.csv"))
    np.save(tmp_path / "wide.npy", np.ones((5, 3)))
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 2"):
        model.predict(np.load(tmp_path / "wide.npy", mmap_mode="r"))


def test_dask_array_nan_in_a_middle_chunk() -> None:
    da = pytest.importorskip("dask.array")
    X = BLOBS.copy()
    X[65, 0] = np.nan  # third of four 30-row blocks
    dX = da.from_array(X, chunks=(30, 2))
    with pytest.raises(ValueError, match=r"contains NaN \(first at row 65\)"):
        gmmkit.GaussianMixture(2, **FAST).fit(dX)
    model = gmmkit.GaussianMixture(2, **FAST).fit(BLOBS)
    with pytest.raises(ValueError, match=r"contains NaN \(first at row 65\)"):
        np.asarray(model.score_samples(dX))
    X[65, 0] = 1e155
    with pytest.raises(ValueError, match=r"squares would overflow.*row 65|row 65.*squares"):
        gmmkit.GaussianMixture(2, **FAST).fit(da.from_array(X, chunks=(30, 2)))


def test_dask_dataframe_string_column_is_named() -> None:
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    frame = pd.DataFrame({"a": BLOBS[:, 0], "label": ["x", "y"] * 60, "b": BLOBS[:, 1]})
    ddf = dd.from_pandas(frame, npartitions=3)
    with pytest.raises(ValueError) as in_memory:
        gmmkit.GaussianMixture(2, **FAST).fit(frame)
    assert "could not convert string to float" in str(in_memory.value)
    model = gmmkit.GaussianMixture(2, **FAST).fit(BLOBS)
    for action in (gmmkit.GaussianMixture(2, **FAST).fit, model.predict):
        with pytest.raises(ValueError, match=r"column 'label'.*not numbers") as error:
            action(ddf)
        assert isinstance(error.value, TypeError)  # as before, for existing callers
    fitted = gmmkit.GaussianMixture(2, **FAST).fit(ddf[["a", "b"]])
    np.testing.assert_allclose(
        np.sort(fitted.means_[:, 0]),
        np.sort(gmmkit.GaussianMixture(2, **FAST).fit(BLOBS).means_[:, 0]),
        rtol=1e-6,
    )


def test_parquet_string_column_is_named(tmp_path: Path) -> None:
    table = pa.table({"a": BLOBS[:, 0], "label": ["x", "y"] * 60, "b": BLOBS[:, 1]})
    pq.write_table(table, tmp_path / "s.parquet")
    with pytest.raises(ValueError, match=r"column 'label'.*only numeric"):
        gmmkit.GaussianMixture(2, **FAST).fit(gmmkit.read_parquet(tmp_path / "s.parquet"))
    with pytest.raises(DataFileError, match="column 'label'"):
        read_table(tmp_path / "s.parquet")
    source = gmmkit.read_parquet(tmp_path / "s.parquet", columns=["a", "b"])
    assert gmmkit.GaussianMixture(2, **FAST).fit(source).n_features_in_ == 2


# ----------------------------------------------------------------------------- images
def _two_regions() -> tuple[np.ndarray, np.ndarray]:
    """A 12 x 16 grey level image: left half dark, right half bright, and the truth."""
    truth = np.zeros((12, 16), dtype=int)
    truth[:, 8:] = 1
    return np.where(truth == 1, 200, 30).astype(np.uint8), truth


def _image(mode: str) -> Any:
    from PIL import Image

    grey, _ = _two_regions()
    if mode == "La":
        alpha = np.full_like(grey, 255)
        return Image.frombytes("La", grey.shape[::-1], np.dstack([grey, alpha]).tobytes())
    if mode == "RGBa":
        return _image("RGBA").convert("RGBa")
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) * 10.0 - 300.0)  # not in [0, 1]
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 1000 - 50_000)  # beyond 16 bits
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 250)
    if mode == "I;16B":
        big_endian = (grey.astype(np.uint16) * 250).astype(">u2")
        return Image.frombytes(mode, grey.shape[::-1], big_endian.tobytes())
    if mode == "1":
        return Image.fromarray(grey > 100)  # (converting L dithers)
    if mode == "P":
        return Image.fromarray(grey).convert("RGB").convert(
            "P", palette=Image.Palette.ADAPTIVE, colors=4
        )
    if mode in ("RGBA", "LA", "PA"):
        image = Image.fromarray(grey).convert("RGBA")
        image.putalpha(Image.fromarray(np.where(_two_regions()[1] == 1, 255, 90).astype(np.uint8)))
        return image.convert(mode) if mode != "PA" else image.convert("P").convert("PA")
    return Image.fromarray(grey).convert("RGB").convert(mode)


STORED = {"1": "png", "L": "png", "LA": "png", "P": "png", "RGB": "png", "RGBA": "png",
          "I;16": "png", "I": "tif", "F": "tif", "CMYK": "jpg", "YCbCr": "tif",
          "I;16B": "tif", "LAB": "tif"}
UNSTORED = ["La", "RGBa", "HSV", "PA", "RGBX"]  # no file format keeps these modes


@pytest.mark.parametrize("mode", list(STORED) + UNSTORED)
def test_every_image_mode_is_segmented(tmp_path: Path, mode: str) -> None:
    from PIL import Image

    from gmmkit.apps.segmentation import image_pixels

    image = _image(mode)
    assert image.mode == mode
    if mode in STORED:
        path = tmp_path / f"in.{STORED[mode]}"
        image.save(path)
        with Image.open(path) as stored:
            assert stored.mode == mode
        pixels = gmmkit.read_image(path)
    else:
        pixels = image_pixels(image)
    assert pixels.dtype.kind in "uf" and pixels.ndim in (2, 3)
    if pixels.dtype.kind == "f":
        assert 0.0 <= pixels.min() and pixels.max() <= 1.0
    result = gmmkit.segment_image(pixels, 2, random_state=0, init_params="kmeans")
    labels, truth = result.labels, _two_regions()[1]
    assert len(np.unique(labels)) == 2
    assert np.array_equal(labels == labels[0, 0], truth == truth[0, 0])  # the two halves
    out = tmp_path / "out.png"
    gmmkit.write_image(out, result.image)
    with Image.open(out) as written:
        assert written.size == image.size


def test_alpha_is_kept_as_a_feature() -> None:
    """Same colour, different transparency: two segments, transparency kept."""
    from gmmkit.apps.segmentation import image_pixels

    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., :3] = 120
    rgba[..., 3] = 255
    rgba[:, :4, 3] = 0
    from PIL import Image

    pixels = image_pixels(Image.fromarray(rgba))
    result = gmmkit.segment_image(pixels, 2, random_state=0, init_params="kmeans")
    assert result.image.shape == (10, 10, 4)
    assert np.all(result.image[:, :4, 3] == 0) and np.all(result.image[:, 4:, 3] == 255)


def test_images_that_cannot_be_segmented_are_rejected_before_the_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from gmmkit.apps.segmentation import image_pixels

    def no_fit(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the mixture was fitted")

    monkeypatch.setattr(gmmkit.GaussianMixture, "fit", no_fit)
    monkeypatch.setattr(gmmkit, "segment_image", no_fit)
    values = np.ones((4, 5), dtype=np.float32)
    values[1, 2] = np.nan
    Image.fromarray(values).save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match="mode 'F' image contains NaN"):
        gmmkit.read_image(tmp_path / "nan.tif")

    class Foreign:
        def __init__(self) -> None:
            self.mode = "I;16S"
            self.info: dict[str, Any] = {}

    with pytest.raises(ValueError, match="cannot segment an image of mode 'I;16S'"):
        image_pixels(Foreign())

    # the CLI: an RGBA picture cannot be written as JPEG, said before any fit
    from gmmkit.cli import main

    _image("RGBA").save(tmp_path / "in.png")
    with pytest.raises(SystemExit) as exit_code:
        main(["segment", str(tmp_path / "in.png"), "-k", "2", "-o", str(tmp_path / "o.jpg")])
    assert exit_code.value.code == 1
    err = capsys.readouterr().err
    assert "cannot write mode RGBA as JPEG" in err and "fitted" not in err, err
    assert not (tmp_path / "o.jpg").exists()


def test_cli_segments_rgba_to_png(tmp_path: Path) -> None:
    from gmmkit.cli import main

    _image("RGBA").save(tmp_path / "in.png")
    with pytest.raises(SystemExit) as ok:
        main(["segment", str(tmp_path / "in.png"), "-k", "2", "-o", str(tmp_path / "o.png"),
              "-q", "--seed", "0"])
    assert ok.value.code == 0
    from PIL import Image

    with Image.open(tmp_path / "o.png") as written:
        assert written.mode == "RGBA"
