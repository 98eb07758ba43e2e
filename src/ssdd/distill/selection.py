"""Which real images a set holds or starts from: rules that pick m of the N source images, as sorted or
centroid-ordered indices. The random subset, KRR-ST's, Boost's and MKDT's random starts draw with the one rule
here, so one seed picks the same images for all of them."""

from __future__ import annotations

import numpy as np
import torch

from ssdd.run.progress import phase


def random_indices(n: int, m: int, generator: torch.Generator) -> torch.Tensor:
    """m distinct indices of range(n), drawn uniformly by `generator` (a CPU generator), sorted."""
    return torch.randperm(n, generator=generator)[:m].sort().values


def kmeans_indices(features: torch.Tensor, m: int, iterations: int, seed: int) -> tuple[torch.Tensor, float]:
    """k-means (m centroids) on (N, d) features; the index of the real sample nearest to each centroid
    (distinct: a centroid whose nearest sample is taken gets its next nearest), and the inertia."""
    from sklearn.cluster import KMeans

    points = features.detach().cpu().numpy().astype(np.float32)
    kmeans = KMeans(n_clusters=m, n_init=1, max_iter=iterations, random_state=seed)
    with phase(f"k-means: {m:,} clusters of {points.shape[0]:,} features (at most {iterations} iterations)") as fitting:
        kmeans.fit(points)
        fitting.detail = f"{kmeans.n_iter_} iterations"
    distances = torch.cdist(torch.from_numpy(kmeans.cluster_centers_), torch.from_numpy(points))  # (m, N)
    order = distances.argsort(dim=1)
    chosen: list[int] = []
    taken: set[int] = set()
    for row in order:
        pick = next(int(i) for i in row[: m + 1].tolist() if int(i) not in taken)
        taken.add(pick)
        chosen.append(pick)
    return torch.tensor(chosen), float(kmeans.inertia_)
