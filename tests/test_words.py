"""The glossary (issue 24 item 9): every word a practitioner stumbles on is explained in one line where
the README first uses it, and report.html ends with a "Words" section of the same lines — one
definition (simulate/words.py), the README held to it here."""
from __future__ import annotations

import html

import pytest

from simulate.cli import main
from simulate.words import GLOSSARY, LEAGUE_WORDS, README_WORDS, REPORT_WORDS, words_html
from tests.conftest import REPO, random_oracle

README = " ".join((REPO / "README.md").read_text().split())  # line breaks as spaces


def test_the_issue_words_are_all_in_the_glossary():
    wanted = {"π", "ε̃", "t_max", "η", "rung", "Δextract", "τ-b", "ρ", "τ_w", "incumbent", "truth", "oracle",
              "BSEC", "AUC on log time", "regret", "benchmark pick"}
    assert set(README_WORDS) == wanted and wanted <= set(REPORT_WORDS) | {"benchmark pick"}
    assert all("\n" not in line and line == " ".join(line.split()) for _, line in GLOSSARY.values())


@pytest.mark.parametrize("word", README_WORDS)
def test_the_readme_explains_each_word_where_it_first_appears(word):
    first = README.find(word)
    assert first >= 0, f"{word!r} is not in the README"
    line = GLOSSARY[word][1]
    assert line in README[first:first + len(word) + 200 + len(line)], (
        f"the README's first {word!r} is not followed by its line {line!r}: …{README[first:first + 300]}…")


def test_the_report_ends_with_the_words(tmp_path):
    random_oracle(n_backbones=10).write(tmp_path / "o.parquet")
    assert main(["--oracle", str(tmp_path / "o.parquet"), "--strategy", "random", "--runs", "5",
                 "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report.html").read_text()
    words = page.split("<h2 id='words'>Words</h2>")[1].split("</dl>")[0]
    for key in REPORT_WORDS:
        shown, line = GLOSSARY[key]
        assert f"<dt>{html.escape(shown)}</dt><dd>{html.escape(line)}</dd>" in words
    assert words.count("<dt>") == len(REPORT_WORDS)


def test_the_league_says_its_words_from_the_same_glossary():
    section = words_html(LEAGUE_WORDS)
    assert section.count("<dt>") == len(LEAGUE_WORDS)
    assert html.escape(GLOSSARY["benchmark pick"][1]) in section and html.escape(GLOSSARY["t_max"][1]) in section
    source = (REPO / "simulate" / "league_report.py").read_text()
    assert "words_html(LEAGUE_WORDS)" in source and "<dt>" not in source  # no second list of definitions
