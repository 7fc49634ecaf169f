"""Near-duplicate images: exact Hamming radius search over perceptual hashes.

Two images are *near-duplicates* when their 256-bit DCT perceptual hashes differ in at most
:data:`PHASH_THRESHOLD` bits **and** their 256-bit difference hashes (the second opinion) differ in
at most :data:`DHASH_THRESHOLD` bits (hashes from :mod:`chestlens.data.hashing`).

Calibration on ``../shared/data`` (1,945 samples from ``load_samples``, 1.89 M pairs; hashes of the
pixels ``read_image`` returns):

* Copies of one picture (ieee8023 / V7 / GeneralBlockchain copies, ieee8023 patients 97/178, Kermany
  person1430 3695/3696; 131 pairs): phash 0-6 bits, dhash 0-5 bits. Inf-Net's documented
  near-duplicate slices 10/43: phash 10, dhash 8. Added later: Figure 1 COVID-00033/COVID-00037
  (one picture re-encoded under two patient ids): phash 0, dhash 3.
* Unrelated chest X-rays (1.73 M pairs): phash >= 42 (0.01th percentile 68, median 120), dhash >= 17,
  and no pair within 40 phash bits and 32 dhash bits at once. Different X-rays of one patient:
  phash >= 48.
* A 64-bit phash cannot separate these: unrelated paediatric X-rays (Kermany) collide at 2 bits,
  which is why the hashes are 256 bits.
* Not found by design: Hannover PNGs versus the re-cropped, re-scaled JPEGs ieee8023 made of them
  (phash 0-116, 8 of 59 within the thresholds); the adapters' metadata (``image_key``) links those.

The thresholds (20 / 20) sit 3x above the copies and 2x below the closest unrelated X-rays. Nearby CT
slices of one patient fall just outside (Inf-Net test 93 / train 5: phash 22).

Search is exact multi-index hashing: the bits are cut into ``m`` bands; if two codes differ in at most
``radius`` bits, some band differs in at most ``radius // m`` bits (pigeonhole), so probing every band
value within that band radius finds every pair (radius 20 on 256 bits: 11 bands of 23-24 bits, band
radius 1). Work grows with the number of candidate pairs, not with all pairs, so 10^5 images stay
cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations, pairwise

import numpy as np

from chestlens.data.hashing import ImageHash

#: Largest phash Hamming distance (of 256 bits) that counts as a near-duplicate.
PHASH_THRESHOLD = 20
#: Largest dhash Hamming distance (of 256 bits) for the second opinion.
DHASH_THRESHOLD = 20
#: Narrowest and widest band for multi-index hashing, in bits (narrow bands -> large buckets; band
#: values must fit in an int64).
_MIN_BAND_BITS = 8
_MAX_BAND_BITS = 62


@dataclass(frozen=True, slots=True)
class NearDuplicate:
    """Two samples whose images are near-duplicates (``a < b``); distances in bits of 256."""

    a: str
    b: str
    phash_distance: int
    dhash_distance: int


def hamming_distances(codes_a: np.ndarray, codes_b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between rows of two ``(n, n_bytes)`` uint8 arrays (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(codes_a, codes_b)).sum(axis=-1, dtype=np.int64)


def brute_force_pairs(codes: np.ndarray, radius: int) -> np.ndarray:
    """All ``(i, j, distance)`` with ``i < j`` and distance <= ``radius``; O(n^2), for checks and tests."""
    found = []
    for i in range(len(codes) - 1):
        dist = hamming_distances(codes[i], codes[i + 1 :])
        for k in np.flatnonzero(dist <= radius):
            found.append((i, i + 1 + int(k), int(dist[k])))
    return _as_pairs(found)


def hamming_pairs(codes: np.ndarray, radius: int) -> np.ndarray:
    """All ``(i, j, distance)`` with ``i < j`` and Hamming distance <= ``radius``, by multi-index hashing.

    Args:
        codes: ``(n, n_bytes)`` uint8, one bit string per row.
        radius: largest distance in bits (>= 0).

    Returns:
        int64 array of shape ``(k, 3)``, rows sorted by ``(i, j)``; identical to :func:`brute_force_pairs`.
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    n = len(codes)
    if n < 2:
        return _as_pairs([])
    bits = np.unpackbits(codes, axis=1)
    n_bits = bits.shape[1]
    # Aim for a band radius of at most 1 (few probes per band) with bands as wide as that allows.
    n_bands = max(-(-n_bits // _MAX_BAND_BITS), min(n_bits // _MIN_BAND_BITS, (radius + 2) // 2))
    band_radius = radius // n_bands
    edges = np.linspace(0, n_bits, n_bands + 1).astype(int)
    found: list[np.ndarray] = []
    for start, stop in pairwise(edges):
        weights = np.left_shift(np.int64(1), np.arange(stop - start, dtype=np.int64))
        keys = bits[:, start:stop].astype(np.int64) @ weights
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        for flips in _flip_masks(stop - start, band_radius):
            probe = keys ^ flips
            lo = np.searchsorted(sorted_keys, probe, side="left")
            hi = np.searchsorted(sorted_keys, probe, side="right")
            counts = hi - lo
            left = np.repeat(np.arange(n), counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            right = order[np.repeat(lo, counts) + offsets]
            keep = left < right
            left, right = left[keep], right[keep]
            dist = hamming_distances(codes[left], codes[right])
            close = dist <= radius
            found.append(np.stack([left[close], right[close], dist[close]], axis=1))
    return np.unique(np.concatenate(found), axis=0)


def _flip_masks(width: int, radius: int) -> list[int]:
    """Every integer of ``width`` bits with at most ``radius`` bits set (0 first)."""
    masks = []
    for r in range(radius + 1):
        for positions in combinations(range(width), r):
            masks.append(sum(1 << p for p in positions))
    return masks


def _as_pairs(found: list[tuple[int, int, int]]) -> np.ndarray:
    return np.array(found, dtype=np.int64).reshape(-1, 3)


def find_near_duplicates(
    hashes: Mapping[str, ImageHash],
    phash_threshold: int = PHASH_THRESHOLD,
    dhash_threshold: int = DHASH_THRESHOLD,
) -> list[NearDuplicate]:
    """Near-duplicate pairs among hashed samples.

    Args:
        hashes: sample uid -> its image hashes (samples that share one file appear once per uid and
            come back as distance-0 pairs).
        phash_threshold: largest phash distance in bits.
        dhash_threshold: largest dhash distance in bits (second opinion).

    Returns:
        Pairs sorted by ``(a, b)`` with ``a < b``.
    """
    uids = sorted(hashes)
    if len(uids) < 2:
        return []
    phashes = np.stack([np.frombuffer(hashes[u].phash, np.uint8) for u in uids])
    dhashes = np.stack([np.frombuffer(hashes[u].dhash, np.uint8) for u in uids])
    pairs = hamming_pairs(phashes, phash_threshold)
    result = []
    for i, j, dist in pairs.tolist():
        second = int(hamming_distances(dhashes[i], dhashes[j]))
        if second <= dhash_threshold:
            result.append(NearDuplicate(uids[i], uids[j], int(dist), second))
    return result
