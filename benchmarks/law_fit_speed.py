"""How long a memory-law fit takes: 100 points, 1000 bootstrap resamples (median of 3).

python benchmarks/law_fit_speed.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from memlaw.law import MemoryLaw


def main() -> None:
    rng = np.random.default_rng(0)
    ranks = rng.choice([1, 2, 4, 8, 16, 32, 64, 128, 256, 512], 100).astype(float)
    lengths = rng.choice([50, 100, 200, 500, 1000, 2000, 4000, 8000, 10000], 100).astype(float)
    delta = 5.0 * ranks**0.7 * lengths**-0.5 + 0.3 + rng.normal(0, 0.05, 100)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        law = MemoryLaw(bootstrap=1000, seed=0).fit(ranks, lengths, delta)
        times.append(time.perf_counter() - started)
    print(f"100 points, 1000 bootstrap resamples: {statistics.median(times):.2f} s (median of 3)")
    print(f"C={law.C_:.4g} alpha={law.alpha_:.4g} beta={law.beta_:.4g} b={law.b_:.4g} R2={law.r2_:.4f}")


if __name__ == "__main__":
    main()
