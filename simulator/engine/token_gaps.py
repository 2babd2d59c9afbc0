"""Token gaps (TBT, inter-token latency) in bounded memory: a fixed-bin log histogram.

A long run makes hundreds of millions of gaps between consecutive output tokens; keeping each
one costs 8 bytes a token. ``TokenGapHistogram`` keeps a count per logarithmic bin instead, plus
the exact count, sum (so the mean), minimum and maximum:

    bin 0          bin 1                bin i                      bin NUM_BINS - 1
    [0, LOW)   [LOW, LOW*g)   ...   [LOW*g^(i-1), LOW*g^i)   ...   [LOW*g^(NUM_BINS-2), inf)

with ``g = GROWTH``. Gaps are first appended to ``buffer`` (a compact array of doubles the
schedulers append to in their fold-back; a gap shared by a whole batch goes once into
``shared_buffer`` with its count in ``shared_counts``) and binned in vectorised chunks by ``flush``.

Quantile error bound. ``quantile(q)`` reads the order statistics numpy's linear interpolation
reads (``floor(h)`` and ``ceil(h)``, ``h = (n - 1) q``), estimates each as the geometric middle of
its bin, clamped to the exact [min, max], and interpolates between them as numpy does. A bin's
geometric middle is within a factor ``sqrt(GROWTH)`` of every value in the bin, so each estimate,
and hence the interpolated result, is within relative error ``sqrt(GROWTH) - 1`` (0.499 % for
GROWTH = 1.01) of ``numpy.percentile`` of the stored gaps, for gaps in [LOW, LOW * g^(NUM_BINS-2)]
(1 ns to over 1e4 s); a gap below LOW (1 ns, including the zero gaps of tokens that reach the
client together) is estimated as 0 (absolute error < 1 ns). ``mean``, ``min`` and ``max`` are exact
(the mean up to float summation order). Histograms merge exactly by adding counts (``merge``).
"""

from __future__ import annotations

import math
from array import array

import numpy as np

LOW = 1e-9  # s: gaps below are counted in bin 0 and read as 0
GROWTH = 1.01  # ratio of one bin's upper edge to its lower edge
NUM_BINS = 2 + math.ceil(math.log(1e4 / LOW) / math.log(GROWTH))  # covers LOW..1e4 s, then one overflow bin
FLUSH_AT = 1 << 16  # buffered gaps binned at once
_LOG_GROWTH = math.log(GROWTH)
QUANTILE_RELATIVE_ERROR = math.sqrt(GROWTH) - 1  # the bound above: 0.00499


class TokenGapHistogram:
    """Counts of token gaps (s) in logarithmic bins, with exact count, sum, min and max.

    Attributes:
        buffer: gaps (s) appended by the schedulers and not yet binned; ``flush`` bins them.
        counts: int64 array, shape (NUM_BINS,): gaps per bin (see the module docstring).
        count, total_s, min_s, max_s: exact number, sum, smallest and largest of the binned gaps.
    """

    def __init__(self) -> None:
        self.buffer = array("d")
        # Gaps that several requests share (one decode step of a batch), each with its count.
        self.shared_buffer = array("d")
        self.shared_counts = array("q")
        self.counts = np.zeros(NUM_BINS, dtype=np.int64)
        self.count = 0
        self.total_s = 0.0
        self.min_s = math.inf
        self.max_s = -math.inf

    def add(self, gaps_s: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Bin ``gaps_s`` (shape (n,), seconds, >= 0), gap i counted ``counts[i]`` times
        (int64, shape (n,); default once each)."""
        gaps = np.asarray(gaps_s, dtype=np.float64)
        if not gaps.size:
            return
        assert gaps.min() >= 0.0, "token gaps are never negative"
        with np.errstate(divide="ignore"):
            index = np.floor(np.log(gaps / LOW) / _LOG_GROWTH) + 1
        index = np.clip(index, 0, NUM_BINS - 1).astype(np.int64)
        if counts is None:
            self.counts += np.bincount(index, minlength=NUM_BINS)
            self.count += int(gaps.size)
            self.total_s += float(gaps.sum())
        else:
            counts = np.asarray(counts, dtype=np.int64)
            self.counts += np.bincount(index, weights=counts, minlength=NUM_BINS).astype(np.int64)
            self.count += int(counts.sum())
            self.total_s += float(gaps @ counts)
        self.min_s = min(self.min_s, float(gaps.min()))
        self.max_s = max(self.max_s, float(gaps.max()))

    def flush(self) -> None:
        """Bin the buffered gaps and empty the buffers."""
        if len(self.buffer):
            self.add(np.frombuffer(self.buffer, dtype=np.float64))
            del self.buffer[:]
        if len(self.shared_buffer):
            self.add(np.frombuffer(self.shared_buffer, dtype=np.float64), np.frombuffer(self.shared_counts, dtype=np.int64))
            del self.shared_buffer[:]
            del self.shared_counts[:]

    def merge(self, other: TokenGapHistogram) -> None:
        """Add ``other``'s gaps to this histogram (exact: counts add)."""
        self.flush()
        other.flush()
        self.counts += other.counts
        self.count += other.count
        self.total_s += other.total_s
        self.min_s = min(self.min_s, other.min_s)
        self.max_s = max(self.max_s, other.max_s)

    def _order_statistic(self, cumulative: np.ndarray, k: int) -> float:
        """Estimate of the k-th smallest gap (0-based): its bin's geometric middle, clamped."""
        i = int(np.searchsorted(cumulative, k, side="right"))
        if i == 0:
            return 0.0
        middle = LOW * GROWTH ** (i - 0.5)
        return min(max(middle, self.min_s), self.max_s)

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile (0..1) of the gaps (s), as numpy's linear interpolation would give
        within the module's error bound; None with no gap."""
        self.flush()
        if self.count == 0:
            return None
        cumulative = np.cumsum(self.counts)
        h = (self.count - 1) * q
        lo, hi = math.floor(h), math.ceil(h)
        x_lo = self._order_statistic(cumulative, lo)
        x_hi = x_lo if hi == lo else self._order_statistic(cumulative, hi)
        return x_lo + (h - lo) * (x_hi - x_lo)

    def mean(self) -> float | None:
        """Exact mean gap (s); None with no gap."""
        self.flush()
        return self.total_s / self.count if self.count else None

    def stats(self, keys: tuple[str, ...] = ("p50", "p99")) -> dict[str, float | None]:
        """``{"p50": s, "p99": s, "mean": s, "max": s}`` for the requested keys (None when empty)."""
        self.flush()
        out: dict[str, float | None] = {}
        for key in keys:
            if key == "mean":
                out[key] = self.mean()
            elif key == "max":
                out[key] = self.max_s if self.count else None
            else:
                out[key] = self.quantile(float(key[1:]) / 100)
        return out
