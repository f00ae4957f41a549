"""The paper's protocol and the defaults both phases share: one place per fact.

``precompute run`` / ``make precompute`` / ``precompute estimate`` default to these fractions,
seeds and evaluators; ``precompute search`` climbs :data:`DEFAULT_FRACTIONS` for successive
halving; the simulator's truth is :data:`TRUTH` for an oracle that names none, a sweep's is
:func:`infer_truth` of its evaluators unless it names one.
"""
from __future__ import annotations

#: shares of the train and test splits a sweep evaluates (the paper's 100 %, 10 %, 1 %)
DEFAULT_FRACTIONS: tuple[float, ...] = (1.0, 0.1, 0.01)
#: replicates per (backbone, evaluator, fraction): seeds 0 .. DEFAULT_SEEDS - 1
DEFAULT_SEEDS = 3
#: the cheap proxies (``precompute/proxies.py``): scores of frozen features, no head trained
PROXIES: tuple[str, ...] = ("knn", "ridge", "logme", "hscore")
#: what a sweep evaluates by default: the paper's head and silhouette, and the four cheap proxies
#: (``mlp-sklearn``, the second head, is opt-in)
DEFAULT_EVALUATORS: tuple[str, ...] = ("mlp", "silhouette", *PROXIES)
#: the evaluator whose score at fraction 1.0 is the truth ε of our oracles
TRUTH = "mlp"
#: the heads (a classifier trained on the features, scored by test accuracy): what a sweep takes as its truth
#: when it runs no ``mlp`` and exactly one of them (``precompute run --evaluators mlp-sklearn``)
HEADS: tuple[str, ...] = ("mlp", "mlp-sklearn")
#: every evaluator ``precompute`` has, in its registry's order (``precompute/evaluators.py``'s
#: ``EVALUATORS`` is keyed by exactly these): what ``--evaluators`` / ``--evaluator`` take, checked and
#: listed without importing torch
EVALUATOR_NAMES: tuple[str, ...] = (*HEADS, "silhouette", *PROXIES)
#: the paper's head: Linear(D, 50) -> ReLU -> Linear(50, C), Adam lr 1e-3, 200 epochs, batch 200
MLP_PROTOCOL = {"hidden": 50, "optimizer": "Adam", "lr": 1e-3, "epochs": 200, "batch_size": 200,
                "loss": "cross_entropy"}


def infer_truth(evaluators) -> str:
    """The truth of a sweep that names none: :data:`TRUTH` if it runs it, else its only head
    (:data:`HEADS`), else :data:`TRUTH` (such a run has no truth rows; ``precompute run`` refuses it)."""
    evaluators = list(evaluators)
    heads = [e for e in HEADS if e in evaluators]
    return TRUTH if TRUTH in evaluators or len(heads) != 1 else heads[0]


def fractions_text(fractions=DEFAULT_FRACTIONS) -> str:
    """``1.0,0.1,0.01``: how a fraction list is written on a command line."""
    return ",".join(repr(float(f)) for f in fractions)


__all__ = ["DEFAULT_FRACTIONS", "DEFAULT_SEEDS", "PROXIES", "DEFAULT_EVALUATORS", "EVALUATOR_NAMES", "TRUTH", "HEADS",
           "MLP_PROTOCOL", "fractions_text", "infer_truth"]
