"""Perceptual hashing, exact Hamming search, hash cache and patient linking."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chestlens.data.duplicates import (
    DHASH_THRESHOLD,
    PHASH_THRESHOLD,
    NearDuplicate,
    brute_force_pairs,
    find_near_duplicates,
    hamming_pairs,
)
from chestlens.data.hashing import ImageHash, grey_u8, hash_file, hash_grey, hash_samples
from chestlens.data.linking import link_samples
from chestlens.data.records import Sample
from chestlens.io.image import ImageMeta, MedicalImage


def _flip(codes: np.ndarray, n_bits: int, rng: np.random.Generator) -> np.ndarray:
    """Copies of ``codes`` with ``n_bits`` random bits flipped in each row."""
    bits = np.unpackbits(codes, axis=1)
    for row in bits:
        row[rng.choice(row.size, n_bits, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


@pytest.mark.parametrize(("n_bytes", "radius"), [(8, 0), (8, 3), (8, 9), (32, 5), (32, 20), (32, 40)])
def test_multi_index_search_equals_brute_force(n_bytes: int, radius: int) -> None:
    rng = np.random.default_rng(radius + n_bytes)
    base = rng.integers(0, 256, (150, n_bytes), dtype=np.uint8)
    near = np.concatenate([_flip(base[:40], k, rng) for k in (0, 1, radius // 2, radius, radius + 1)])
    codes = np.concatenate([base, near])
    found = hamming_pairs(codes, radius)
    assert np.array_equal(found, brute_force_pairs(codes, radius))
    assert len(found) >= 40 * 3  # the copies within the radius are there


def test_multi_index_search_on_tiny_inputs() -> None:
    assert hamming_pairs(np.zeros((1, 32), np.uint8), 20).shape == (0, 3)
    twins = np.zeros((2, 32), np.uint8)
    assert hamming_pairs(twins, 0).tolist() == [[0, 1, 0]]


def _hash(phash_bits: int, dhash_bits: int) -> ImageHash:
    """A hash whose first ``phash_bits`` / ``dhash_bits`` bits are set (distance from all-zero)."""
    return ImageHash(
        np.packbits(np.arange(256) < phash_bits).tobytes(), np.packbits(np.arange(256) < dhash_bits).tobytes()
    )


def test_near_duplicates_need_both_hashes_close() -> None:
    hashes = {
        "s/zero": _hash(0, 0),
        "s/close": _hash(PHASH_THRESHOLD, DHASH_THRESHOLD),
        "s/dhash-far": _hash(2, DHASH_THRESHOLD + 30),
        "s/phash-far": _hash(PHASH_THRESHOLD + 30, 0),
    }
    expected = NearDuplicate("s/close", "s/zero", PHASH_THRESHOLD, DHASH_THRESHOLD)
    assert find_near_duplicates(hashes) == [expected]


def _picture(seed: int, size: int = 256) -> np.ndarray:
    """A smooth random grey picture (uint8), different for each seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((8, 8)) * 255
    return np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC))


def _hu_image(pixels: np.ndarray) -> MedicalImage:
    meta = ImageMeta(None, "dicom", pixels.shape[-2], pixels.shape[-1], "HU", n_frames=1)
    return MedicalImage(pixels.astype(np.float32), meta)


def test_grey_u8_windows_ct_and_takes_the_middle_slice() -> None:
    volume = np.stack([np.full((4, 4), -1000.0), np.full((4, 4), -600.0), np.full((4, 4), 400.0)])
    grey = grey_u8(_hu_image(volume))
    assert grey.shape == (4, 4) and grey.dtype == np.uint8
    assert grey[0, 0] == 128  # -600 HU is the lung window centre


def test_resized_copy_is_a_near_duplicate_of_its_source() -> None:
    original = _picture(1)
    copy = np.asarray(Image.fromarray(original).resize((180, 180), Image.Resampling.BILINEAR))
    hashes = {"a/1": hash_grey(original), "a/1-small": hash_grey(copy), "a/2": hash_grey(_picture(2))}
    assert [(p.a, p.b) for p in find_near_duplicates(hashes)] == [("a/1", "a/1-small")]


def _sample(uid: str, path: Path, patient: str, **extra: str) -> Sample:
    return Sample(uid.split("/")[0], uid, path, patient, ("normal",), "xray", extra=extra)


def test_hash_cache_reuses_and_refreshes(tmp_path: Path) -> None:
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"img{k}.png")
        Image.fromarray(_picture(k)).save(paths[-1])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    samples = [_sample(f"x/{p.name}", p, f"x:{p.stem}") for p in [*paths, broken]]
    cache = tmp_path / "cache" / "hashes.sqlite"
    seen: list[tuple[int, int]] = []
    first = hash_samples(samples, cache, workers=1, progress=lambda done, total: seen.append((done, total)))
    assert first.n_computed == 4 and first.n_cached == 0 and seen[-1] == (4, 4)
    assert set(first.failures) == {"x/broken.png"} and len(first.hashes) == 3
    second = hash_samples(samples, cache, workers=1)
    assert second.n_cached == 3 and second.hashes == first.hashes  # the failure is retried, not cached
    Image.fromarray(_picture(9)).save(paths[0])
    os.utime(paths[0], ns=(1, 1))
    third = hash_samples(samples, cache, workers=1)
    assert third.n_cached == 2 and third.hashes["x/img0.png"] != first.hashes["x/img0.png"]


def test_linking_joins_ids_aliases_pictures_files_and_duplicates(tmp_path: Path) -> None:
    f = tmp_path / "f.png"
    samples = [
        _sample("a/1", tmp_path / "1.png", "a:1", patient_aliases="a:9"),
        _sample("a/2", tmp_path / "2.png", "a:1"),
        _sample("a/9", tmp_path / "9.png", "a:9"),  # alias of a:1
        _sample("b/x", tmp_path / "x.png", "b:7", image_key="pic:x"),
        _sample("c/x", tmp_path / "cx.png", "c:3", image_key="pic:x"),  # same picture as b/x
        _sample("d/f", f, "d:1"),
        _sample("e/f", f, "e:1"),  # same file as d/f
        _sample("k/p", tmp_path / "p.png", "k:5"),
        _sample("k/q", tmp_path / "q.png", "k:6"),  # near-duplicate of k/p
        _sample("z/alone", tmp_path / "z.png", "z:1"),
    ]
    groups = link_samples(list(reversed(samples)), [NearDuplicate("k/p", "k/q", 2, 1)])
    g = groups.group_of
    assert g["a/1"] == g["a/2"] == g["a/9"] == "a:1"
    assert g["b/x"] == g["c/x"] == "b:7"
    assert g["d/f"] == g["e/f"] == "d:1"
    assert g["k/p"] == g["k/q"] == "k:5"
    assert g["z/alone"] == "z:1"
    reasons = " | ".join(link.reason for link in groups.links)
    for fragment in ("alias a:9", "same picture pic:x", "same file f.png", "near-duplicate image (phash 2"):
        assert fragment in reasons
    assert link_samples(samples, [NearDuplicate("k/p", "k/q", 2, 1)]) == groups


@pytest.mark.shared_data
def test_real_image_copy_found_and_other_image_not(source_dir, tmp_path: Path) -> None:
    folder = source_dir("nih-chestxray14-darkcovidnet") / "X-Ray Image DataSet" / "No_findings"
    first, second = sorted(folder.glob("*.png"))[:2]
    copy = tmp_path / "copy.jpg"
    with Image.open(first) as image:
        image.convert("L").resize((300, 300), Image.Resampling.BILINEAR).save(copy, quality=75)
    hashes = {"nih/a": hash_file(first), "tmp/copy": hash_file(copy), "nih/b": hash_file(second)}
    assert [(p.a, p.b) for p in find_near_duplicates(hashes)] == [("nih/a", "tmp/copy")]
