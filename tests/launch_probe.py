"""A shard task that only reports the environment it runs in (for tests/test_launch.py; importable
by submitit's task processes without torch)."""
from __future__ import annotations

import os


class EnvProbe:
    def __call__(self, cfg, pool, shard, shards):
        return {"shard": shard, "shards": shards, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "ok": 0, "failed": 0, "skipped": 0, "written": []}
