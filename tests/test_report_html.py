"""The HTML report: complete, escaped, self-contained, colour-blind readable, renders in Chromium."""

from __future__ import annotations

import base64
import html
import re
import struct
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from browser import CHROMIUM, Rendered, render
from sample_results import XSS, figure_count, png_base64, sample_run

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

from grader.judging.pictures import figure_to_artifact, heatmap_artifact, reference_heatmap  # noqa: E402
from grader.judging.results import FigureArtifact, RunResult  # noqa: E402
from grader.reports.html import STATUS_STYLES, figure_groups, render_html, write_html  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(sample_run())


def _png_size(b64: str) -> tuple[int, int]:
    data = base64.b64decode(b64, validate=True)
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])  # IHDR follows the signature
    return width, height


def _img_sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


# --- safety and self-containment ------------------------------------------------------------


def test_student_output_is_escaped_everywhere(page: str) -> None:
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()  # the report never carries a script of its own either


def test_titles_and_attributes_are_escaped_too() -> None:
    run = sample_run()
    run.exercises[0].tests[1].figures[0] = FigureArtifact('"><img src=x onerror=alert(1)>', "AA==")
    page = render_html(run)
    assert "<img src=x" not in page
    assert 'alt="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"' in page


def test_the_page_needs_no_network_and_forbids_it(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert (
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
    ) in page


def test_write_html_creates_parent_folders(tmp_path: Path) -> None:
    path = write_html(sample_run(), tmp_path / "reports" / "deep" / "report.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# --- what the report shows ------------------------------------------------------------------


def test_header_shows_total_model_and_why_device_banner_and_when(page: str) -> None:
    assert "3.5 / 16 points" in page
    assert "toy-gpt2" in page and "fallback: gpt2-small not in the local cache" in page
    assert "<dt>device</dt><dd>cpu</dd>" in page
    banner = re.search(r'<div class="banner" role="alert">(.*?)</div>', page, flags=re.S)
    assert banner, "no banner box"
    paragraphs = re.findall(r"<p>(.*?)</p>", banner.group(1), flags=re.S)
    assert paragraphs[0] == "⚠ GRADED ON THE PRACTICE MODEL &#39;toy-gpt2&#39;, not GPT-2 small."
    assert paragraphs[1] == "Why: gpt2-small not in the local cache."  # a sentence, full stop included
    assert "!!" not in banner.group(1)  # a styled box, no ASCII art
    assert "2025-01-02T10:00:00+00:00" in page


def test_each_exercise_shows_score_status_module_and_import_error(page: str) -> None:
    assert "01 · Tokens &amp; attention &lt;basics&gt;" in page
    assert "3.5 / 10 points" in page and "0 / 6 points" in page
    assert "<code>exercises/01/tokens.py</code>" in page
    assert "<code>exercises/02/induction.py</code>" in page
    assert "The module did not import" in page and "SyntaxError: invalid syntax" in page


def test_expected_values_source_is_shown_with_a_local_reference_badge(page: str) -> None:
    assert '<span class="local-ref">⚠ local reference</span>' in page
    assert "no fixtures for <code>toy-gpt2</code>" in page
    assert "expected values:\n    fixtures" in page


def test_provenance_table_lists_every_key_it_has(page: str) -> None:
    for key, value in sample_run().exercises[0].provenance.items():
        assert f"<tr><th>{key}</th><td>{html.escape(value)}</td></tr>" in page


def test_each_test_shows_title_points_status_and_output(page: str) -> None:
    assert "<h3>Attention pattern of layer 0 head 7</h3>" in page
    assert "1.5 / 4 points" in page
    assert "<pre>1 of 3 checks failed\n&lt;script&gt;" in page


def test_captured_output_is_collapsed(page: str) -> None:
    assert re.search(
        r"<details><summary>captured output \(3 lines\)</summary>\s*<pre>debug: &lt;script&gt;",
        page,
    )
    assert "<summary>captured output (1 line)</summary>" in page


def test_each_check_shows_result_weight_expected_got_message_and_hint(page: str) -> None:
    assert re.search(
        r"✗ failed</span></td>\s*<td>values</td>\s*<td class=\"num\">2</td>\s*"
        r"<td><code>rows sum to 1</code></td>\s*<td><code>columns sum to 1</code></td>",
        page,
    )
    assert "<pre>pattern differs from the reference\n  12 of 144 elements differ" in page
    assert "<strong>Hint:</strong> Is the pattern transposed?" in page


def test_every_status_is_a_word_and_a_symbol_not_a_colour_alone(page: str) -> None:
    for word in ["✓ passed", "✗ failed", "– not attempted", "⏱ timed out", "⚠ error", "◐ partial"]:
        assert word in page


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


@pytest.mark.parametrize("status", sorted(STATUS_STYLES))
def test_status_badges_meet_wcag_aa_contrast(status: str) -> None:
    style = STATUS_STYLES[status]
    lighter, darker = sorted([_luminance(style.background), _luminance(style.foreground)])[::-1]
    assert (lighter + 0.05) / (darker + 0.05) >= 4.5


def test_status_badge_colours_differ_in_lightness_not_only_hue() -> None:
    # passed (dark blue) and failed (light orange) stay apart for every kind of colour blindness.
    passed, failed = STATUS_STYLES["passed"], STATUS_STYLES["failed"]
    assert abs(_luminance(passed.background) - _luminance(failed.background)) > 0.2


# --- figures --------------------------------------------------------------------------------


def test_figures_with_a_group_share_a_row_and_ungrouped_ones_stand_alone() -> None:
    a, b, c = (FigureArtifact(t, "AA==", group=g) for t, g in [("a", "g"), ("c", ""), ("b", "g")])
    assert [[f.title for f in row] for row in figure_groups([a, b, c])] == [["a", "b"], ["c"]]


def test_figures_are_rendered_in_rows_by_group(page: str) -> None:
    rows = re.findall(r'<div class="figure-row"[^>]*>(.*?)</div>', page, re.DOTALL)
    assert [row.count("<img") for row in rows] == [2, 1]
    assert 'data-group="L0H7"' in page


def test_every_figure_is_inlined_as_a_png_data_uri(page: str) -> None:
    sources = _img_sources(page)
    assert len(sources) == figure_count(sample_run()) == 3
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert _png_size(src.removeprefix("data:image/png;base64,"))[0] > 0


def test_figure_to_artifact_renders_a_png_and_closes_the_figure() -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    art = figure_to_artifact(fig, "line", caption="c", group="g")
    assert (art.title, art.caption, art.group) == ("line", "c", "g")
    assert _png_size(art.png_base64)[0] > 0
    assert fig.number not in plt.get_fignums()


def test_heatmap_artifact_draws_a_labelled_heatmap() -> None:
    values = np.tril(np.ones((5, 5))) / np.arange(1, 6)[:, None]
    tokens = ["<|endoftext|>", " The", " capital", " $5", "\n"]
    art = heatmap_artifact(values, tokens, tokens, "L0H7", caption="c", group="g", xlabel="key")
    width, height = _png_size(art.png_base64)
    assert width > 100 and height > 100
    assert (art.title, art.caption, art.group) == ("L0H7", "c", "g")


def test_heatmap_accepts_missing_labels_and_many_rows() -> None:
    art = heatmap_artifact(np.random.default_rng(0).random((120, 3)), None, None, "tall")
    assert _png_size(art.png_base64)[1] > 100


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, 2.0, 3.0], "must be 2-D, got shape (3,)"),
        (np.zeros((2, 2, 2)), "must be 2-D, got shape (2, 2, 2)"),
        (np.zeros((0, 3)), "empty"),
        ([[1.0, float("nan")], [0.0, 1.0]], "1 NaN or infinite entries of 4"),
        ([["a", "b"], ["c", "d"]], "must be numeric"),
    ],
)
def test_heatmap_rejects_bad_values_with_a_clear_message(values: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        heatmap_artifact(values, None, None, "bad")


def test_heatmap_rejects_labels_that_do_not_match_the_shape() -> None:
    with pytest.raises(ValueError, match="x_labels has 2 entries but values have 3 columns"):
        heatmap_artifact(np.zeros((2, 3)), ["a", "b"], ["a", "b"], "bad")


# --- in a real browser ----------------------------------------------------------------------

# Runs before the page's CSP meta is parsed, so it is allowed; its listeners fire later. It writes
# #harness-result when it is done: the test waits for that element, not for a time budget.
HARNESS = """<script>
window.__errors = [];
addEventListener("error", e => __errors.push("error: " + (e.message || e.target.outerHTML)), true);
document.addEventListener("securitypolicyviolation",
  e => __errors.push("csp: " + e.violatedDirective + " " + e.blockedURI));
addEventListener("load", async () => {
  const imgs = Array.from(document.images);
  const ok = await Promise.all(imgs.map(
    img => img.decode().then(() => img.complete && img.naturalWidth > 0, () => false)));
  const out = document.createElement("div");
  out.id = "harness-result";
  out.textContent = JSON.stringify({
    ok: ok.filter(Boolean).length, total: imgs.length, errors: __errors,
    pictures: Array.from(document.querySelectorAll("figure.difference img")).map(img => img.alt),
    pageWidth: document.documentElement.scrollWidth,
    widestImage: Math.max(0, ...imgs.map(img => img.getBoundingClientRect().right))});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium_with_every_image_decoded(tmp_path: Path) -> None:
    run: RunResult = sample_run()
    heatmap = heatmap_artifact(np.eye(4), list("abcd"), list("abcd"), "real heatmap", group="L0H7")
    run.exercises[0].tests[0].figures.append(heatmap)
    rendered = _render_in_chromium(render_html(run), tmp_path)
    outcome = rendered.result
    assert (outcome["ok"], outcome["total"], outcome["errors"]) == (figure_count(run), figure_count(run), [])
    assert figure_count(run) == 4
    # The report has no script and the harness logs nothing: any console line (an uncaught
    # error, a CSP violation) is a fault.
    assert rendered.console == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.dom  # still text in the live DOM


def _render_in_chromium(report: str, tmp_path: Path, width: int = 1280) -> Rendered:
    """Load `report` in headless Chromium at `width` px, once the harness has measured it."""
    harness = tmp_path / "harness.html"
    harness.write_text(report.replace("<head>", "<head>\n" + HARNESS, 1), encoding="utf-8")
    return render(harness, "harness-result", tmp_path / "profile", width=width)


def _failed_pattern_run(monkeypatch: pytest.MonkeyPatch) -> RunResult:
    """A report of a student whose attention pattern is transposed, graded by the real Grade."""
    from grader.judging import scoring
    from grader.judging.scoring import Grade

    monkeypatch.setattr(scoring, "soft", type("Quiet", (), {"fail": staticmethod(lambda text: None)}))  # not this test's failure

    tokens = ["<|endoftext|>", "The", " capital", " of", " France", " is"]
    want = torch.softmax(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)), -1).tril()
    grade = Grade()
    grade.compare("pattern of layer 0, head 1", want.T.contiguous(), want, mistakes={"the pattern is transposed": want.T},
                  hint="[query, key]", axes=(("query", tokens), ("key", tokens)))
    run = sample_run()
    test = run.exercises[0].tests[0]
    test.checks, test.status, test.points = list(grade.checks), "failed", 0.0
    return run


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_a_failed_pattern_shows_expected_got_and_difference_within_1280_px(tmp_path: Path, monkeypatch) -> None:
    run = _failed_pattern_run(monkeypatch)
    picture = run.exercises[0].tests[0].checks[0].picture
    assert picture is not None and "pattern of layer 0, head 1" in picture.title
    outcome = _render_in_chromium(render_html(run), tmp_path, width=1280).result
    assert outcome["errors"] == [] and outcome["ok"] == outcome["total"] == figure_count(run) + 1
    assert outcome["pictures"] == ["pattern of layer 0, head 1: expected, got and their difference"]
    assert outcome["pageWidth"] <= 1280, f"the page is {outcome['pageWidth']} px wide: something overflows"
    assert outcome["widestImage"] <= 1280


def test_the_difference_picture_has_three_panels_on_one_colour_scale() -> None:
    from grader.judging.pictures import difference_figure

    want = torch.eye(4)
    fig = difference_figure(want, want.flip(0), "pattern", (("query", list("abcd")), ("key", list("abcd"))))
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["expected", "got", "got − expected"]
    assert len({ax.images[0].get_clim() for ax in panels}) == 1  # one colour scale
    assert len(fig.axes) == 4  # and one colour bar
    assert [t.get_text() for t in panels[0].get_yticklabels()] == list("abcd")
    assert panels[0].get_ylabel() == "query" and panels[0].get_xlabel() == "key"
    plt.close(fig)


def test_higher_ranks_show_the_slice_where_they_differ_most_and_passed_comparisons_nothing() -> None:
    from grader.judging.pictures import difference_artifact
    from grader.judging.scoring import Grade

    want = torch.zeros(2, 3, 4, 4)
    got = want.clone()
    got[1, 2, 0, 0] = 1.0
    picture = difference_artifact(want, got, "activations")
    assert picture is not None and "[1, 2, :, :]" in picture.title
    grade = Grade()
    assert grade.compare("same", want, want.clone()) and grade.checks[0].picture is None


def test_sample_png_helper_makes_valid_pngs() -> None:
    assert _png_size(png_base64(7, 2)) == (7, 2)


def test_a_reference_picture_is_drawn_once_for_the_same_values_and_labels() -> None:
    values = torch.arange(12.0).reshape(3, 4)
    first = reference_heatmap(values, list("abcd"), list("xyz"), "reference: a pattern")
    assert reference_heatmap(values.clone(), list("abcd"), list("xyz"), "reference: a pattern") is first
    assert reference_heatmap(values + 1, list("abcd"), list("xyz"), "reference: a pattern") is not first
    assert reference_heatmap(values, list("abce"), list("xyz"), "reference: a pattern") is not first
    assert reference_heatmap(values, list("abcd"), list("xyz"), "reference: another") is not first


def test_a_students_picture_is_always_drawn_afresh() -> None:
    values = torch.arange(12.0).reshape(3, 4)
    assert heatmap_artifact(values, None, None, "yours") is not heatmap_artifact(values, None, None, "yours")
