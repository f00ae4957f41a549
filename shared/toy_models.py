"""timm's toy ``test_*`` models: one definition for both phases (torch-free).

timm ships tiny architectures for its own unit tests (``test_vit``, ``test_convnext``,
``test_byobnet``, ...) with "pretrained" tags of random quality: cheapest of all, they would top any
cheap-first order and win a low budget with a score near chance.  ``precompute``'s default pool
(:mod:`precompute.pool`) and ``simulate``'s ``timm:<set>`` oracles (:mod:`simulate.timm_oracle`)
leave them out with this one test.
"""
from __future__ import annotations

#: the architecture prefix of timm's toy test models
TEST_MODEL_PREFIX = "test_"


def is_test_model(name: str) -> bool:
    """Whether ``name`` is one of timm's toy test models (its architecture starts with ``test_``)."""
    return str(name).split(".", 1)[0].startswith(TEST_MODEL_PREFIX)


__all__ = ["TEST_MODEL_PREFIX", "is_test_model"]
