"""Names of timm's published results files and where they come from: facts only, no I/O, so that a
command's ``--help`` can show them without loading polars (:mod:`shared.timm_results` reads the files)."""
from __future__ import annotations

#: the commit of timm's repository the results are pinned to
TIMM_COMMIT = "aa4b5850c1543fa488abf260f18390eda46cf85d"
RAW_URL = "https://raw.githubusercontent.com/huggingface/pytorch-image-models/{commit}/results/{file}"
#: the inference benchmark that gives throughput and GMACs by default (an RTX 4090, AMP, NCHW)
DEFAULT_BENCHMARK = "benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv"
#: the environment variable naming a local folder of the files
ENV_DIR = "VIBES_TIMM_RESULTS"
IMAGENET_RESULTS = "results-imagenet.csv"

__all__ = ["TIMM_COMMIT", "RAW_URL", "DEFAULT_BENCHMARK", "ENV_DIR", "IMAGENET_RESULTS"]
