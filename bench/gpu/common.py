"""What the parts of bench_gpu share: the device settling after a part, error and median helpers, plain
JSON, and a dataclass field that carries its description (the JSON schema's prose, :mod:`bench.gpu.schema`)."""
from __future__ import annotations

import gc
import json
import math
import os
import statistics
from dataclasses import Field, field
from pathlib import Path

import numpy as np


def described(text: str, **kw) -> Field:
    """A dataclass field whose ``metadata["doc"]`` says what it holds (units, when it is null)."""
    return field(metadata={"doc": text, **kw.pop("metadata", {})}, **kw)


def median(values) -> float | None:
    v = [float(x) for x in values if x is not None]
    return statistics.median(v) if v else None


def error_text(exc: BaseException) -> str:
    """``"<ExcType>: <message>"`` on one line (the type alone when the message is empty)."""
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def settle(device: str) -> None:
    """After a part: wait for the device, and give its cached memory back (part f's workers need it)."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def jsonable(x):
    """Plain JSON: numpy scalars to Python, tuples to lists, non-finite floats to null."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if x is None or isinstance(x, str):
        return x
    return str(x)


def write(doc: dict, path: Path | None) -> None:
    """``doc`` as plain JSON to ``path`` (atomically; nothing when ``path`` is None)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(doc), indent=1) + "\n")
    os.replace(tmp, path)
