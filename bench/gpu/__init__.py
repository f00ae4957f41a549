"""The parts of ``bench/bench_gpu.py`` (issue #18), one module each, and what they share.

``plan`` (the sizes and time caps), ``common`` (device, timing and output helpers), ``context`` (the
pool, sample and dataset the parts share), ``sweep`` (a), ``extract`` (b), ``heads`` (c), ``proxies``
(d), ``search`` (e), ``check`` (f), ``targets`` (the issue's targets and the summary) and ``schema``
(the JSON the run writes, as dataclasses, and its check).  Nothing here imports torch, timm or polars
at its top: the parts import the project's heavy modules when they run.
"""
