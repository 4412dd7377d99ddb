"""Colour-histogram features for the baseline model.

The old notebook described each image by per-channel histograms: `np.histogram` of the
channel's pixel values with `bins=np.linspace(0, 255, 6)` (edges 0, 51, 102, 153, 204, 255;
the last bin includes 255), the three channels' 5 counts concatenated into 15 features.
`rgb_histogram_loop` is that code, kept as the reference; `rgb_histogram` computes the same
integers for the whole array ~70x faster (benchmarks/features.py).
"""

from __future__ import annotations

import numpy as np

BIN_EDGES = np.linspace(0, 255, 6)
NUM_BINS = len(BIN_EDGES) - 1
NUM_FEATURES = 3 * NUM_BINS


def _bin_thresholds() -> np.ndarray:
    """Smallest uint8 value that np.histogram puts in bin k, for k = 1..4 (here 51..204).

    Derived from np.histogram itself so the fast path can never drift from the reference.
    """
    bins = np.array([np.argmax(np.histogram([v], bins=BIN_EDGES)[0]) for v in range(256)])
    if np.any(np.diff(bins) < 0):
        raise AssertionError("histogram bins are not monotone in the pixel value")
    return np.array([int(np.argmax(bins >= k)) for k in range(1, NUM_BINS)], dtype=np.uint8)


_THRESHOLDS = _bin_thresholds()
# A group of 8 RGB pixels is 24 bytes = 3 uint64 words; byte b of the group is channel b % 3.
_BYTE_CHANNEL = np.eye(3, dtype=np.int64)[np.arange(24) % 3]  # [24, 3] one-hot


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images: expected shape [N, H, W, 3], got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images: expected dtype uint8, got {images.dtype}")
    return images


def rgb_histogram_loop(images: np.ndarray) -> np.ndarray:
    """The old notebook's per-image loop (reference implementation, slow). int64 [N, 15]."""
    images = _check_images(images)
    features = np.empty((images.shape[0], NUM_FEATURES), dtype=np.int64)
    for i, image in enumerate(images):
        parts = [np.histogram(image[:, :, c], bins=BIN_EDGES)[0] for c in range(3)]
        features[i] = np.concatenate(parts)
    return features


def _count_at_least(block: np.ndarray, threshold: np.uint8) -> np.ndarray:
    """Per image and channel, how many pixels are >= threshold: int64 [m, 3].

    The comparison's 0/1 bytes are summed 8 at a time as uint64 words (SWAR: every byte is
    its own counter; a byte never exceeds pixels/8 <= 255, so no carries), folding the word
    array in halves, then each of the 24 byte counters is added to its channel.
    """
    m = block.shape[0]
    words = np.greater_equal(block, threshold).view(np.uint64).reshape(m, -1, 3)
    groups = words.shape[1]
    if groups & (groups - 1) == 0:  # power of two: contiguous halving adds are fastest
        words = words.reshape(m, -1)
        while words.shape[1] > 3:
            half = words.shape[1] // 2
            words = words[:, :half] + words[:, half:]
    else:
        words = words.sum(axis=1, dtype=np.uint64)
    return np.ascontiguousarray(words).view(np.uint8).reshape(m, 24) @ _BYTE_CHANNEL


def rgb_histogram(images: np.ndarray, chunk_size: int = 256) -> np.ndarray:
    """Per-channel 5-bin histograms of every image, int64 [N, 15]: pixel counts per bin,
    channels R, G, B in order. Bit-identical to `rgb_histogram_loop`.

    Counts "pixels >= each bin's lower edge" with four vectorized comparisons (one cheap
    pass each over a cache-sized chunk) and takes differences. Chunks of 256 images (768 KB)
    stay in cache.
    """
    images = _check_images(images)
    n, height, width, _ = images.shape
    pixels = height * width
    if pixels % 8 or pixels // 8 > 255:
        return rgb_histogram_loop(images)  # the byte-counter trick needs 8 | pixels <= 2040
    flat = images.reshape(n, pixels * 3)
    features = np.empty((n, 3, NUM_BINS), dtype=np.int64)
    for start in range(0, n, chunk_size):
        block = flat[start : start + chunk_size]
        at_least = np.stack([_count_at_least(block, t) for t in _THRESHOLDS], axis=2)
        out = features[start : start + chunk_size]  # [m, channel, bin]
        out[:, :, 0] = pixels - at_least[:, :, 0]
        out[:, :, 1:-1] = at_least[:, :, :-1] - at_least[:, :, 1:]
        out[:, :, -1] = at_least[:, :, -1]
    return features.reshape(n, NUM_FEATURES)
