"""load_pool, subsampling, the catalog the CLI shows, out-of-distribution sets, the Pool itself."""

from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from rich.console import Console

from miakit.data import DATASETS, Pool, load_pool
from miakit.data.catalog import fetch, list_datasets
from miakit.data.ood import OOD_KINDS, conform, make_ood
from miakit.data.sources import SOURCES, RemoteFile
from miakit.errors import MiakitError
from miakit.seeding import rng

from .data_helpers import write_tar


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIAKIT_CACHE", str(tmp_path / "cache"))


def test_every_registered_data_set_has_a_source_entry():
    assert set(DATASETS) == set(SOURCES)
    for info in SOURCES.values():
        assert all(f.md5 is None or len(f.md5) == 32 for f in info.files)
        assert info.mean is None or len(info.mean) == info.shape[-1] == len(info.std)


def test_load_pool_keeps_old_calls_working():
    pool = load_pool("digits")
    assert pool.num_records == 1797 and pool.x.shape == (1797, 64)


def test_subsample_is_seeded_sorted_and_keeps_the_test_split():
    full = load_pool("digits")
    a = load_pool("digits", subsample=100, seed=3)
    b = load_pool("digits", subsample=100, seed=3)
    c = load_pool("digits", subsample=100, seed=4)
    chosen = np.sort(rng(3, "subsample").choice(1797, 100, replace=False))
    assert np.array_equal(a.x, full.x[chosen]) and np.array_equal(a.y, full.y[chosen])
    assert np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)
    assert a.fingerprint() != full.fingerprint()
    with pytest.raises(MiakitError, match=r"data\.subsample: must lie in \[2, 1797\]"):
        load_pool("digits", subsample=5000)


def test_unknown_names_and_misplaced_paths_are_errors(tmp_path):
    with pytest.raises(MiakitError, match=r"known: .*cifar10.*user"):
        load_pool("imagenet")
    with pytest.raises(MiakitError, match=r"data\.path: data\.name 'user' needs"):
        load_pool("user")
    with pytest.raises(MiakitError, match=r"data\.path: only used with data\.name 'user'"):
        load_pool("digits", path=tmp_path)


def test_user_data_through_load_pool(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.eye(4), y=[0, 1, 1, 0])
    pool = load_pool("user", path=tmp_path / "d.npz", subsample=2, seed=0)
    assert pool.num_records == 2 and pool.x.shape == (2, 4)


def test_missing_files_without_downloads_name_everything(tmp_path):
    with pytest.raises(MiakitError) as caught:
        load_pool("adult", tmp_path, download=False)
    message = str(caught.value)
    assert "adult.data" in message and "adult.test" in message
    assert "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/adult.test" in message


def test_data_dir_falls_back_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MIAKIT_DATA", str(tmp_path))
    with pytest.raises(MiakitError, match=str(tmp_path / "location")):
        load_pool("location", download=False)


def test_catalog_lists_every_data_set_with_presence_and_size(tmp_path):
    (tmp_path / "adult").mkdir()
    (tmp_path / "adult" / "adult.data").write_bytes(b"x" * 10)
    (tmp_path / "adult" / "adult.test").write_bytes(b"y" * 5)
    (tmp_path / "location").mkdir()
    rows = {row.name: row for row in list_datasets(tmp_path)}
    assert list(rows) == list(DATASETS)
    assert rows["adult"].present and rows["adult"].size_bytes == 15
    assert rows["adult"].folder == tmp_path / "adult"
    assert not rows["location"].present and rows["location"].size_bytes == 0
    assert rows["digits"].present and rows["digits"].folder is None
    assert rows["cifar10"].source == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert rows["cifar10"].records == 50_000 and rows["cifar10"].shape == (32, 32, 3)


def test_fetch_downloads_verifies_and_loads(tmp_path, monkeypatch):
    served = tmp_path / "served"
    rows = np.random.default_rng(0).integers(0, 2, (3, 446))
    text = "\n".join(f'"{i + 1}",' + ",".join(map(str, r)) for i, r in enumerate(rows)) + "\n"
    archive = write_tar(served / "dataset_location.tgz", {"bangkok": text.encode()})
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/dataset_location.tgz"
        digest = hashlib.md5(archive.read_bytes()).hexdigest()
        spec = RemoteFile("dataset_location.tgz", (url,), digest)
        monkeypatch.setitem(SOURCES, "location", replace(SOURCES["location"], files=(spec,)))
        data = tmp_path / "data"
        console = Console(file=io.StringIO())
        assert fetch("location", data, console) == data / "location"
        assert (data / "location" / "dataset_location.tgz").read_bytes() == archive.read_bytes()
        assert load_pool("location", data).y.tolist() == [0, 1, 2]
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- out-of-distribution sets ---


def image_pool() -> Pool:
    g = np.random.default_rng(1)
    x = g.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    x_test = g.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    return Pool("img", x, g.integers(0, 4, 10), 4, x_test, np.arange(6) % 4, (0.5,) * 3, (0.1,) * 3)


def test_permuted_records_are_pixel_shuffles_of_held_out_records():
    pool = image_pool()
    ood = make_ood("permuted", pool, 6, rng(0, "ood"))
    assert ood.x.shape == (6, 8, 8, 3) and ood.x.dtype == np.uint8
    assert ood.y.tolist() == pool.y_test.tolist()  # all 6 test records, in order
    for shuffled, original in zip(ood.x, pool.x_test, strict=True):
        pixels = lambda a: sorted(map(tuple, a.reshape(-1, 3)))  # noqa: E731
        assert pixels(shuffled) == pixels(original) and not np.array_equal(shuffled, original)


def test_scaled_records_are_clipped_multiples():
    pool = image_pool()
    ood = make_ood("scaled", pool, 6, rng(0, "ood"), factor=1.5)
    expected = np.clip(np.rint(pool.x_test.astype(float) * 1.5), 0, 255)
    assert np.array_equal(ood.x, expected.astype(np.uint8))


def test_noise_follows_the_published_constants_not_the_records():
    pool = image_pool()
    ood = make_ood("noise", pool, 4000, rng(0, "ood"))
    pixels = ood.x.reshape(-1, 3).astype(float)
    assert np.allclose(pixels.mean(axis=0), 0.5 * 255, atol=0.3)
    assert np.allclose(pixels.std(axis=0), 0.1 * 255, atol=0.3)
    assert set(np.unique(ood.y)) <= set(range(4))


def test_another_data_set_brought_to_the_pool_shape():
    digits_like = Pool("tab", np.zeros((5, 64), np.float32), np.arange(5) % 3, 3)
    ood = make_ood("dataset", digits_like, 20, rng(0, "ood"), source="digits")
    assert ood.x.shape == (20, 64) and ood.x.dtype == np.float32 and ood.y.max() < 3
    with pytest.raises(MiakitError, match="same features"):
        make_ood(
            "dataset",
            Pool("t", np.zeros((2, 3), np.float32), np.zeros(2, int), 1),
            2,
            rng(0, "o"),
            source="digits",
        )


def test_conform_resizes_and_converts_channels():
    pool = image_pool()
    grey = np.full((2, 28, 28, 1), 100, dtype=np.uint8)
    out = conform(grey, pool, "mnist")
    assert out.shape == (2, 8, 8, 3) and (out == 100).all()
    mnist_like = Pool("m", np.zeros((2, 28, 28, 1), np.uint8), np.zeros(2, int), 1)
    colour = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    colour[..., 0] = 255
    assert conform(colour, mnist_like, "cifar").shape == (1, 28, 28, 1)
    assert int(conform(colour, mnist_like, "cifar")[0, 5, 5, 0]) == 76  # ITU-R 601 luma of red


def test_ood_rejects_unknown_kinds_and_oversized_requests():
    assert OOD_KINDS == ("dataset", "permuted", "scaled", "noise")
    with pytest.raises(MiakitError, match="unknown"):
        make_ood("blur", image_pool(), 2, rng(0, "ood"))
    with pytest.raises(MiakitError, match="7 records asked for"):
        make_ood("permuted", image_pool(), 7, rng(0, "ood"))


# --- Pool ---


def test_pool_fingerprint_covers_normalization_and_take_keeps_the_rest():
    pool = image_pool()
    assert pool.fingerprint() != replace(pool, std=(0.2,) * 3).fingerprint()
    part = pool.take(np.array([3, 1]))
    assert np.array_equal(part.x, pool.x[[3, 1]]) and part.x_test is pool.x_test
    with pytest.raises(ValueError, match="one mean per channel"):
        replace(pool, mean=(0.1,), std=(0.1,))
