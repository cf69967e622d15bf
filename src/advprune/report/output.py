"""The report's files, written in one place: figures (PDF + PNG), their titles, and display tables as Markdown,
LaTeX (booktabs, through pandas' Styler) and a page-sized PDF + PNG. Every file is written atomically: a killed job
never leaves a half-written file that looks finished.

An artefact's builder returns what to save, a `Built`; `save_artefact` writes the files its registry entry names
and its provenance (`advprune build`).

A display table is a DataFrame of strings: its index (one level or several) holds the row labels, its columns the
headers. Repeated row labels are printed once per group, as a paper prints them. A `Block` is one such table with a
short title and its notes; a file may hold several blocks (Table 1 and, when runs collapsed, Table 1 without them).
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.transforms import Affine2D

from advprune import provenance
from advprune.runtime import atomic_path

PNG_DPI = 200  # the PNG beside every PDF (for READMEs and slides)
FONT_PT = 7.5  # body text
MIN_FONT_PT = 7.0  # a wider table gets a smaller font down to this, so a page printed at 100% stays readable
TITLE_PT = 8.5
COLUMN_GAP_PT = 8.0
MARGIN_PT = 6.0
LINE_SPACING = 1.35
ASCENT = 0.8  # of the font size: from the top of a line to its baseline
MIN_TEXT_WIDTH_PT = 330.0
# A4's width less 2 x 15 mm margins (letter is wider): a table no wider fits a page at 100%.
MAX_WIDTH_PT = 180 / 25.4 * 72


@dataclass(frozen=True)
class Block:
    table: pd.DataFrame
    title: str
    notes: str = ""
    muted: str = ""  # rows whose last label is this are drawn in grey (the paper's values under ours)


def cell_text(value: object) -> str:
    """How a value reads in every format: numbers are rounded where they are made; a missing one is blank."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None or value is pd.NA else str(value)


def one_line(value: object) -> str:
    """A cell for Markdown and LaTeX: the PDF's line breaks inside a cell become spaces."""
    return cell_text(value).replace("\n", " ")


def _has_row_labels(table: pd.DataFrame) -> bool:
    return table.index.nlevels > 1 or table.index.name is not None


def label_rows(table: pd.DataFrame) -> list[list[str]]:
    """Per row, its labels with those equal to the row above's (same prefix) left blank."""
    if not _has_row_labels(table):
        return [[] for _ in range(len(table))]
    rows, previous = [], None
    for key in table.index:
        key = tuple(map(str, key if isinstance(key, tuple) else (key,)))
        same = 0
        while previous is not None and same < len(key) and key[same] == previous[same]:
            same += 1
        rows.append([""] * same + list(key[same:]))
        previous = key
    return rows


def label_names(table: pd.DataFrame) -> list[str]:
    return [str(n or "") for n in table.index.names] if _has_row_labels(table) else []


# ---------------------------------------------------------------------------------------------------------------------
# Markdown and LaTeX


def to_markdown(block: Block) -> str:
    """A GitHub-flavoured markdown table, title first, notes after (no `tabulate` dependency)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    headers = [*label_names(block.table), *map(str, block.table.columns)]
    body = [line(headers), "|" + "|".join("---" for _ in headers) + "|"]
    rows = zip(label_rows(block.table), block.table.to_numpy())
    body += [line([*labels, *map(one_line, values)]) for labels, values in rows]
    notes = f"\n\n{block.notes}" if block.notes else ""
    return f"{block.title}\n\n" + "\n".join(body) + notes + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "—": "---", "−": "-",
}  # fmt: skip


def latex_escape(text: str) -> str:
    """Escape for LaTeX, and spell the symbols a plain pdflatex setup lacks (±, em dash) in LaTeX."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _latex_cell(text: str) -> str:
    """Escaped; a cell's second line (a collapse count) stacked under the first, as in the PDF (\\shortstack is
    LaTeX's own: no package needed)."""
    lines = [latex_escape(line) for line in text.split("\n")]
    return lines[0] if len(lines) == 1 else r"\shortstack{" + r"\\".join(lines) + "}"


def to_latex(block: Block, label: str) -> str:
    """A booktabs `table` (needs \\usepackage{booktabs}) from pandas' Styler; row labels as leading columns, printed
    once per group, so no multirow package is needed."""
    names = label_names(block.table)
    rows = zip(label_rows(block.table), block.table.to_numpy())
    shown = pd.DataFrame([[*labels, *map(cell_text, values)] for labels, values in rows],
                         columns=[*names, *map(str, block.table.columns)])  # fmt: skip
    # LaTeX numbers its tables itself: "Table 1: " would print twice.
    caption = re.sub(r"^Table \d+: ", "", block.title) + (f" {block.notes}" if block.notes else "")
    return (
        shown.style.format(_latex_cell)
        .format_index(latex_escape, axis=1)
        .set_table_styles([{"selector": "small", "props": ":;"}])  # \small, as papers set their tables
        .hide(axis="index")
        .to_latex(
            column_format="l" * len(names) + "c" * block.table.shape[1],
            hrules=True,
            caption=latex_escape(caption),
            label=label,
            position_float="centering",
            environment="table",
        )
    )


# ---------------------------------------------------------------------------------------------------------------------
# PDF and PNG

_MEASURE = FigureCanvasAgg(Figure(dpi=72)).get_renderer()  # at 72 dpi a pixel is a point


def text_width(text: str, size: float) -> float:
    """Width in points of `text` (its longest line) in matplotlib's default font at `size` pt."""
    prop = FontProperties(size=size)
    return max(_MEASURE.get_text_width_height_descent(line, prop, ismath=False)[0] for line in str(text).split("\n"))


def wrap(text: str, width_pt: float, size: float) -> list[str]:
    """Greedy word wrap to `width_pt`, measured in the font, not counted in characters."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and text_width(candidate, size) > width_pt:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _block_page(block: Block) -> Figure:
    """One page: title, top rule, headers, mid rule, rows, bottom rule, notes. With several row-label levels the first
    becomes a heading above its group (a long dataset name then costs no column width)."""
    labels, names = label_rows(block.table), label_names(block.table)
    grouped = len(names) > 1
    headers = [*names[grouped:], *map(str, block.table.columns)]
    rows = [[*lab[grouped:], *map(cell_text, values)] for lab, values in zip(labels, block.table.to_numpy())]
    groups = [lab[0] if grouped else "" for lab in labels]  # non-empty where a group starts
    muted = [bool(block.muted) and lab[-1] == block.muted for lab in labels] if names else [False] * len(rows)
    n_labels = len(names) - grouped

    def measure(size: float) -> tuple[list[float], float]:
        widths = [max(text_width(cell, size) for cell in column) for column in zip(headers, *rows)]
        return widths, sum(widths) + COLUMN_GAP_PT * (len(widths) - 1)

    widths, table_w = measure(FONT_PT)
    if table_w > MAX_WIDTH_PT:  # a wide grid: a smaller font, never below MIN_FONT_PT
        size = max(MIN_FONT_PT, FONT_PT * (MAX_WIDTH_PT - COLUMN_GAP_PT * (len(widths) - 1)) / sum(widths))
        widths, table_w = measure(size)
    else:
        size = FONT_PT
    line_h = size * LINE_SPACING
    header_lines = max(h.count("\n") + 1 for h in headers)
    text_w = max(table_w, MIN_TEXT_WIDTH_PT)  # a narrow table's title and notes still read as lines, not a column
    title = wrap(block.title, text_w, TITLE_PT)
    page_w = max(text_w, *(text_width(t, TITLE_PT) for t in title), *(text_width(g, size) for g in groups))
    page_w += 2 * MARGIN_PT
    notes = wrap(block.notes, max(page_w - 2 * MARGIN_PT, text_w), size) if block.notes else []
    heights = [max(cell.count("\n") + 1 for cell in row) for row in rows]  # a cell may hold a second line
    n_lines = header_lines + sum(heights) + sum(1 for g in groups if g) + len(notes)
    page_h = 2 * MARGIN_PT + len(title) * TITLE_PT * LINE_SPACING + n_lines * line_h + 16

    fig = Figure(figsize=(page_w / 72, page_h / 72), dpi=72)
    points = Affine2D().scale(1 / 72) + fig.dpi_scale_trans  # draw in points from the bottom-left corner
    y = page_h - MARGIN_PT

    def text(x: float, top: float, s: str, fontsize: float | None = None, ha: str = "left", **kw: object) -> None:
        # Line by line on baselines: aligning tops would shift a line by its tallest glyph ("(" vs "ours").
        fontsize = fontsize or size
        for i, line in enumerate(s.split("\n")):
            fig.text(x, top - ASCENT * fontsize - i * fontsize * LINE_SPACING, line, fontsize=fontsize, ha=ha,
                     va="baseline", transform=points, **kw)  # fmt: skip

    def rule(at: float, width: float) -> None:
        fig.add_artist(Line2D([MARGIN_PT, MARGIN_PT + table_w], [at, at], linewidth=width, color="black",
                              transform=points))  # fmt: skip

    lefts = [MARGIN_PT + sum(widths[:i]) + COLUMN_GAP_PT * i for i in range(len(widths))]

    def cells(values: Sequence[str], top: float, color: str = "black") -> None:
        for i, value in enumerate(values):
            centred = i >= n_labels
            text(lefts[i] + (widths[i] / 2 if centred else 0), top, value, ha="center" if centred else "left",
                 color=color)  # fmt: skip

    for line in title:
        text(MARGIN_PT, y, line, TITLE_PT)
        y -= TITLE_PT * LINE_SPACING
    y -= 2
    rule(y, 0.8)
    y -= 2
    cells(headers, y)
    y -= header_lines * line_h + 1
    rule(y, 0.5)
    y -= 2
    for i, (row, group, quiet, height) in enumerate(zip(rows, groups, muted, heights)):
        if group:
            if i:
                rule(y + 1, 0.3)
            text(MARGIN_PT, y, group, fontweight="bold")
            y -= line_h
        cells(row, y, "0.35" if quiet else "black")
        y -= height * line_h
    y -= 1
    rule(y, 0.8)
    y -= 4
    for line in notes:
        text(MARGIN_PT, y, line)
        y -= line_h
    return fig


def draw_pdf(blocks: Sequence[Block], pdf: Path) -> None:
    """Each block on its own page of `pdf`, sized to the table (no wider than needed), and the first page as a
    PNG at 200 dpi beside it (for READMEs and slides)."""
    pages = [_block_page(block) for block in blocks]
    with atomic_path(pdf) as tmp, PdfPages(tmp) as out:
        for page in pages:
            out.savefig(page)
    with atomic_path(Path(pdf).with_suffix(".png")) as tmp:
        pages[0].savefig(tmp, dpi=PNG_DPI, format="png")


def write_table_files(blocks: Sequence[Block], stem: Path, *, data: pd.DataFrame | None = None) -> None:
    """`stem`.md and `stem`.tex (every block) and `stem`.csv (`data`, the numbers behind the table, else the first
    block as shown), each written atomically; `draw_pdf` writes the PDF."""
    stem = Path(stem)
    first = blocks[0].table
    csv = data if data is not None else first.reset_index() if _has_row_labels(first) else first
    with atomic_path(stem.with_suffix(".csv")) as tmp:
        csv.to_csv(tmp, index=False)
    with atomic_path(stem.with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(to_markdown(b) for b in blocks))
    labels = [f"tab:{stem.name}"] + [f"tab:{stem.name}-{i + 1}" for i in range(1, len(blocks))]
    with atomic_path(stem.with_suffix(".tex")) as tmp:
        tmp.write_text("\n".join(to_latex(b, label) for b, label in zip(blocks, labels)))


def save_figure(fig: Figure, out: Path) -> None:
    """Write `out` and, beside a PDF, a PNG at PNG_DPI."""
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    if out.suffix == ".pdf":
        with atomic_path(out.with_suffix(".png")) as tmp:
            fig.savefig(tmp, bbox_inches="tight", dpi=PNG_DPI, format="png")


def files_beside(pdf: Path, suffixes: Iterable[str]) -> list[Path]:
    """An artefact's files (advprune.kinds: FIGURE_FILES, TABLE_FILES) named after its PDF."""
    return [Path(pdf).with_suffix(f".{suffix}") for suffix in suffixes]


@dataclass
class Built:
    """What an artefact's builder returns: what to save, and what its provenance records."""

    figure: Figure | None = None  # the PDF and its PNG
    blocks: Sequence[Block] = ()  # a table: .csv, .md and .tex (and the PDF's pages where there is no figure)
    data: pd.DataFrame | None = None  # the .csv: the numbers behind the table (default: its first block as shown)
    markdown: str | None = None  # the .md of a table in a layout of its own (the claims), with `data` as its .csv
    tables: dict[Path, pd.DataFrame] = field(default_factory=dict)  # tidy tables beside (the toy's per-seed rows)
    inputs: list[Path] = field(default_factory=list)  # the files it was built from (their sha256 are recorded)
    models: list[dict[str, Any]] = field(default_factory=list)  # their models (advprune.provenance.MODEL_FIELDS)
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, result: Any, **record: Any) -> Built:
        """A model grid's builder result, a Figure or a table as (blocks, values), with its provenance."""
        if isinstance(result, Figure):
            return cls(figure=result, **record)
        blocks, values = result
        return cls(blocks=blocks, data=values, **record)


class Entry(Protocol):
    """What saving reads of a registry entry (advprune.kinds.Artefact; not imported: no builder depends on the
    registry, advprune.imports)."""

    name: str
    builder: str
    files: tuple[str, ...]


def save_artefact(artefact: Entry, built: Built, out: Path) -> None:
    """Write `built` as the artefact's files, named after `out` (its first file, advprune.kinds), its other tidy
    tables, then `<stem>.provenance.json`: the one place where an artefact is saved."""
    out = Path(out)
    stem, files = out.with_suffix(""), files_beside(out, artefact.files)
    if "pdf" in artefact.files:  # and its PNG: the figure, or else the table's pages
        if built.figure is not None:
            save_figure(built.figure, stem.with_suffix(".pdf"))
        else:
            draw_pdf(built.blocks, stem.with_suffix(".pdf"))
    if built.blocks:
        write_table_files(built.blocks, stem, data=built.data)
    elif built.markdown is not None:
        with atomic_path(stem.with_suffix(".csv")) as tmp:
            built.data.to_csv(tmp, index=False)
        with atomic_path(stem.with_suffix(".md")) as tmp:
            tmp.write_text(built.markdown)
    for path, table in built.tables.items():
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise ValueError(f"{artefact.builder} built nothing for {', '.join(missing)}")
    provenance.write_artefact_record(out, artefact.name, outputs=[*files, *built.tables], inputs=built.inputs,
                                     models=built.models, parameters=built.parameters)  # fmt: skip


def wrap_to_inches(text: str, inches: float, size: float) -> str:
    """`text` wrapped to `inches` at `size` points (a one-panel figure is narrower than a long line)."""
    width = max(30, int(inches * 14 * 9 / size))  # about 14 characters per inch at 9 pt
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def suptitle(fig: Figure, text: str) -> None:
    """A figure's one short title; what it shows in detail is its caption's job (captions/*.rst, a record's page)."""
    fig.suptitle(wrap_to_inches(text, fig.get_figwidth(), 12), fontsize=12)
