"""The words a practitioner meets in the outputs, each explained in one line: one definition for the
report's and the league's "Words" sections (:func:`words_html`), and the same lines the README gives
where each word first appears (``tests/test_words.py`` holds the README to them).

:data:`GLOSSARY`: the word as the README writes it -> (the word as a section lists it, its one line).
"""
from __future__ import annotations

import html

GLOSSARY: dict[str, tuple[str, str]] = {
    "oracle": ("oracle", "every backbone's measured score and seconds on one dataset, at every fraction of the data, "
                         "seed and evaluator: a search replayed against it needs no GPU"),
    "π": ("sampler π", "the order in which backbones are tried"),
    "ε̃": ("evaluator ε̃", "how each backbone tried is scored while searching: a head trained on a fraction of the "
                         "data, or a cheap proxy"),
    "t_max": ("budget t_max", "the search's time: it stops before an evaluation that would not end by then"),
    "BSEC": ("BSEC", "Backbone Selection Efficiency Curve: the true score of the backbone a strategy selects against "
                     "t_max, the median over runs with its 25–75 % band"),
    "truth": ("truth", "the evaluator at 100 % of the data whose score is a backbone's true score, the paper's head "
                       "mlp unless --truth names another"),
    "incumbent": ("incumbent", "the best backbone a search has evaluated so far by its evaluator ε̃, its answer if "
                               "stopped now"),
    "η": ("η (eta)", "successive halving keeps the best 1/η of each rung, set with --eta, 3 by default"),
    "rung": ("rung", "one step of successive halving: backbones evaluated at one fraction of the data, the best "
                     "promoted to the next, larger fraction"),
    "Δextract": ("Δextract", "extracting only the images a promotion adds, the lower fraction's features kept"),
    "τ-b": ("τ-b (Kendall)", "how alike a ranking orders the pairs of backbones to the truth's, ties corrected: 1 the "
                             "same order, 0 unrelated"),
    "ρ": ("ρ (Spearman)", "the correlation of the two rankings' ranks: 1 the same, 0 unrelated"),
    "τ_w": ("τ_w (weighted τ)", "Kendall's tau with swaps near the top of the ranking counting most"),
    "AUC on log time": ("AUC on log time", "the mean of a BSEC over budgets spread evenly in log time: one number "
                                           "per curve, higher is better"),
    "regret": ("regret", "the best possible true score minus the true score of what was selected; for a strategy, "
                         "its median over runs, 0 when it finds the best backbone in half of them at least"),
    "benchmark pick": ("benchmark pick", "the backbone that ranks best on the other datasets, by mean normalised "
                                         "rank leaving the dataset out: what one takes from a benchmark without "
                                         "searching"),
    # the league's own
    "strategy π × evaluator ε̃": ("strategy π × evaluator ε̃", "the order in which backbones are tried (sampler π) "
                                  "and how each is scored while searching (evaluator ε̃; the oracle's truth unless a "
                                  "cheaper proxy is named)"),
    "beats the benchmark pick": ("beats the benchmark pick", "the share of runs whose selection has a higher true "
                                 "score than the benchmark pick on that dataset, averaged over the datasets"),
}

#: the words of ``simulate``'s report.html, in the order a reader meets them
REPORT_WORDS = ("oracle", "truth", "π", "ε̃", "t_max", "BSEC", "incumbent", "η", "rung", "Δextract", "τ-b", "ρ",
                "τ_w", "regret", "AUC on log time")
#: the words of ``simulate league``'s league.html
LEAGUE_WORDS = ("strategy π × evaluator ε̃", "t_max", "regret", "benchmark pick", "beats the benchmark pick")
#: the words the README explains where each first appears (issue 24)
README_WORDS = ("π", "ε̃", "t_max", "BSEC", "oracle", "truth", "η", "rung", "Δextract", "incumbent", "τ-b", "ρ",
                "τ_w", "AUC on log time", "regret", "benchmark pick")


def words_html(keys) -> str:
    """A "Words" section: each word of ``keys`` (of :data:`GLOSSARY`) with its one line."""
    return ("<h2 id='words'>Words</h2><dl class='words'>" + "".join(
        f"<dt>{html.escape(GLOSSARY[k][0])}</dt><dd>{html.escape(GLOSSARY[k][1])}</dd>" for k in keys) + "</dl>")


__all__ = ["GLOSSARY", "REPORT_WORDS", "LEAGUE_WORDS", "README_WORDS", "words_html"]
