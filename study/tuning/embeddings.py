"""The embedding step: a frozen encoder's embeddings computed once, before the trials that read them.

A trial whose algorithm trains on embeddings (``Algorithm.on_embeddings``: ``linear_probe``, Dedieu et al.
2024's protocol) reads its rows from the content-addressed cache (``CACHE/embeddings/``, keyed by the
encoder file's hash, the dataset's cache key and the preprocessing). Before stages ``lnl`` and ``final``
the driver runs one Ray task per distinct (dataset, stored encoder, preprocessing) among the stage's points
(``embedding_jobs``) with the pretraining resources, so that the encoder runs once per dataset, not once
per trial, and the stage's trials start on cached rows. A job whose embeddings are cached returns at once (a
resumed study, a later study on the same encoder); one that fails is reported, and the trials of its
points compute the embeddings themselves (under the cache's lock) and record the error if it recurs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

import ray
import torch

from study.experiment import embed_point, input_normalization, pretrain_request
from study.lnl import ALGORITHMS
from study.tuning.plan import Point
from study.tuning.spec import Resources, Spec


def embedding_jobs(spec: Spec, points: Iterable[Point]) -> list[Point]:
    """One point per distinct (dataset, stage-1 encoder, preprocessing) among ``points`` whose LNL entry's
    algorithm trains on embeddings, in order of first appearance."""
    jobs: dict[str, Point] = {}
    for p in points:
        if not ALGORITHMS[spec.lnl_map[p.lnl].algorithm].on_embeddings:
            continue
        request = pretrain_request(spec, p.dataset, p.ssl, p.seed)
        norm = input_normalization(spec, p)
        key = json.dumps(
            [p.dataset, request.key(), spec.model.resolution, list(norm.mean), list(norm.std)], sort_keys=True
        )
        jobs.setdefault(key, p)
    return list(jobs.values())


def _embed(spec_data: dict, point: Point, cache_dir: str, data_cache: str) -> int:
    """A Ray task: the embeddings of ``point``'s dataset (and shifted test set) under its encoder."""
    from study import storage

    spec = Spec.model_validate(spec_data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return embed_point(spec, point, cache_dir, storage.node_data_cache(data_cache), device)


def compute_embeddings(
    spec: Spec,
    points: Iterable[Point],
    cache_dir: str,
    data_cache: str,
    resources: Resources,
    has_gpu: bool,
    quiet: bool = False,
) -> dict[Point, str | None]:
    """Run the embedding jobs of ``points`` as Ray tasks and wait for them: per job, None where its
    embeddings are in the cache, else the error (printed; the jobs' trials compute the embeddings
    themselves)."""
    jobs = embedding_jobs(spec, points)
    if not jobs:
        return {}
    task = ray.remote(_embed).options(
        num_cpus=resources.cpus, num_gpus=resources.gpus if has_gpu else 0, max_retries=1, name="study-embed"
    )
    data = spec.model_dump(mode="json")
    refs = {p: task.remote(data, p, cache_dir, data_cache) for p in jobs}
    out: dict[Point, str | None] = {}
    for p, ref in refs.items():
        try:
            ray.get(ref)
            out[p] = None
        except Exception as e:  # a Ray task error: the trials try again and record it
            out[p] = str(e).strip().splitlines()[-1][:500] if str(e).strip() else type(e).__name__
            print(
                f"study: computing the embeddings of {p.dataset} under {p.ssl} (seed {p.seed}) failed: "
                f"{out[p]}; their trials will compute them",
                file=sys.stderr,
            )
    if not quiet:
        done = sum(v is None for v in out.values())
        print(f"study: embeddings of {done}/{len(jobs)} (dataset, encoder) pairs in the cache", file=sys.stderr)
    return out


__all__ = ["compute_embeddings", "embedding_jobs"]
