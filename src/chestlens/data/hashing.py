"""Perceptual hashes of sample images, with an on-disk cache.

Each image becomes two 256-bit hashes of its grey pixels (``imagehash.phash`` and ``imagehash.dhash``
with ``hash_size=16``); :mod:`chestlens.data.duplicates` compares them.

Grey pixels: radiographs and pictures come from :func:`chestlens.io.read_image` as ``[0, 1]`` and are
rounded to 8 bits; CT in Hounsfield units goes through the lung window (centre -600 HU, width
1500 HU) first. Volumes (CT series, multi-frame files) are hashed by their middle slice only, so a
series matches another copy of the same series but not a single slice taken from it.

Cache: an SQLite file (default ``$XDG_CACHE_HOME/chestlens/hashes.sqlite``, i.e.
``~/.cache/chestlens/hashes.sqlite``; ``$CHESTLENS_HASH_CACHE`` overrides) keyed by hash version,
absolute path, size in bytes and modification time in ns, so a changed file is hashed again. Rows are
written in transactions (atomic) every few hundred images, so an interrupted run keeps its work.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from chestlens.data.records import Sample
from chestlens.errors import ChestlensInputError
from chestlens.io.image import MedicalImage
from chestlens.io.windowing import lung_window
from chestlens.workers import MIN_ITEMS_FOR_POOL, process_pool

#: Bump when the pixels-to-hash recipe changes; old cache rows are then ignored.
HASH_VERSION = "phash16+dhash16/v1"
CACHE_ENV = "CHESTLENS_HASH_CACHE"
_HASH_SIZE = 16  # 16x16 = 256 bits per hash
_COMMIT_EVERY = 256  # images per cache transaction

#: ``progress(done, total)``: images finished so far (cached ones included) and in all.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ImageHash:
    """Two 256-bit perceptual hashes of one image, 32 bytes each (``numpy.packbits`` order)."""

    phash: bytes
    dhash: bytes


@dataclass(frozen=True, slots=True)
class HashResult:
    """Hashes per sample uid, and the samples whose image could not be read (uid -> reason)."""

    hashes: dict[str, ImageHash]
    failures: dict[str, str] = field(default_factory=dict)
    n_cached: int = 0
    n_computed: int = 0


def default_cache_path() -> Path:
    """``$CHESTLENS_HASH_CACHE``, else ``$XDG_CACHE_HOME/chestlens/hashes.sqlite`` (``~/.cache``)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "chestlens" / "hashes.sqlite"


def grey_u8(image: MedicalImage) -> np.ndarray:
    """The 2-D uint8 grey image that gets hashed (middle slice of volumes; CT in the lung window)."""
    pixels = image.pixels
    if pixels.ndim == 3:
        pixels = pixels[pixels.shape[0] // 2]
    if image.meta.pixel_unit == "HU":
        pixels = lung_window(pixels)
    return np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)


def hash_grey(grey: np.ndarray) -> ImageHash:
    """Hash a 2-D uint8 grey image."""
    picture = Image.fromarray(np.ascontiguousarray(grey))
    phash = imagehash.phash(picture, hash_size=_HASH_SIZE)
    dhash = imagehash.dhash(picture, hash_size=_HASH_SIZE)
    return ImageHash(_pack(phash), _pack(dhash))


def _pack(value: imagehash.ImageHash) -> bytes:
    return np.packbits(np.asarray(value.hash, dtype=bool).ravel()).tobytes()


def hash_file(path: Path) -> ImageHash:
    """Read an image file (or DICOM series folder) with :func:`chestlens.io.read_image` and hash it."""
    from chestlens.io import read_image

    return hash_grey(grey_u8(read_image(path)))


def _hash_or_reason(path: Path) -> ImageHash | str:
    """Worker: the hash, or a one-line reason when the file cannot be read."""
    try:
        return hash_file(path)
    except ChestlensInputError as error:
        return error.reason
    except Exception as error:  # a scan of 10^5 files must not stop at one undecodable image
        return f"{type(error).__name__}: {error}"


def file_key(path: Path) -> str:
    """Cache key: hash version, absolute path, size (bytes) and mtime (ns); folders sum their files."""
    path = path.resolve()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        stats = [p.stat() for p in files]
        size = sum(s.st_size for s in stats)
        mtime = max((s.st_mtime_ns for s in stats), default=path.stat().st_mtime_ns)
    else:
        stat = path.stat()
        size, mtime = stat.st_size, stat.st_mtime_ns
    return f"{HASH_VERSION}|{path.as_posix()}|{size}|{mtime}"


class HashCache:
    """SQLite store ``key -> (phash, dhash)``; see :func:`file_key`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30.0)
            with self._db:
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS hashes (key TEXT PRIMARY KEY, phash BLOB, dhash BLOB)"
                )
        except (OSError, sqlite3.Error) as error:
            raise ChestlensInputError(path, f"cannot open the hash cache: {error}") from None

    def lookup(self, keys: Iterable[str]) -> dict[str, ImageHash]:
        """Cached hashes for those keys that have one."""
        found = {}
        for key in keys:
            row = self._db.execute("SELECT phash, dhash FROM hashes WHERE key = ?", (key,)).fetchone()
            if row is not None:
                found[key] = ImageHash(bytes(row[0]), bytes(row[1]))
        return found

    def store(self, items: dict[str, ImageHash]) -> None:
        """Insert or replace rows in one transaction."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO hashes (key, phash, dhash) VALUES (?, ?, ?)",
                [(k, v.phash, v.dhash) for k, v in sorted(items.items())],
            )

    def close(self) -> None:
        self._db.close()


def hash_samples(
    samples: Iterable[Sample],
    cache: Path | None,
    workers: int = 2,
    progress: Progress | None = None,
) -> HashResult:
    """Hash every sample's image, reusing cached hashes.

    Args:
        samples: samples to hash; samples sharing one file are hashed once.
        cache: SQLite cache file (see :func:`default_cache_path`), or None for no cache.
        workers: processes for hashing (1: in this process).
        progress: called as images finish, for a progress bar.
    """
    by_path: dict[Path, list[str]] = {}
    for sample in samples:
        by_path.setdefault(Path(sample.path), []).append(sample.uid)
    paths = sorted(by_path)
    keys = {p: file_key(p) if p.exists() else "" for p in paths}
    store = HashCache(cache) if cache is not None else None
    hashes: dict[str, ImageHash] = {}
    failures: dict[str, str] = {}
    try:
        cached = store.lookup(k for k in keys.values() if k) if store is not None else {}
        todo = [p for p in paths if keys[p] not in cached]
        for path in paths:
            if keys[path] in cached:
                for uid in by_path[path]:
                    hashes[uid] = cached[keys[path]]
        done = len(paths) - len(todo)
        if progress is not None:
            progress(done, len(paths))
        pending: dict[str, ImageHash] = {}
        for path, outcome in zip(todo, _run(todo, workers), strict=True):
            if isinstance(outcome, str):
                failures.update(dict.fromkeys(by_path[path], outcome))
            else:
                hashes.update(dict.fromkeys(by_path[path], outcome))
                pending[keys[path]] = outcome
            if store is not None and len(pending) >= _COMMIT_EVERY:
                store.store(pending)
                pending = {}
            done += 1
            if progress is not None:
                progress(done, len(paths))
        if store is not None and pending:
            store.store(pending)
    finally:
        if store is not None:
            store.close()
    return HashResult(hashes, failures, n_cached=len(paths) - len(todo), n_computed=len(todo))


def _run(paths: list[Path], workers: int) -> Iterator[ImageHash | str]:
    """Hash ``paths`` in order, in a process pool when it pays off."""
    if workers <= 1 or len(paths) < MIN_ITEMS_FOR_POOL:
        yield from (_hash_or_reason(p) if p.exists() else "file not found" for p in paths)
        return
    with process_pool(workers) as pool:
        yield from pool.map(_hash_or_reason, paths, chunksize=8)
