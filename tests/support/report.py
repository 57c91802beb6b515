"""What the report stages write, as the tests expect it: the files of a run's report and of
the cross-run comparison, stated here rather than read from the package (so the tests notice
a figure that goes missing), and readers for the HTML tables and PNG files they hold."""

from __future__ import annotations

from html.parser import HTMLParser

#: What a run's report holds (results/<run>/report/).
RUN_REPORT_FIGURES = frozenset(
    {
        "losses.png",
        "lr.png",
        "throughput.png",
        "ap_vs_iteration.png",
        "per_category_ap.png",
        "pr_curves.png",
        "predictions.png",
    }
)
RUN_REPORT_TABLES = frozenset({"metrics.csv", "metrics.html", "summary.md"})
#: What the cross-run comparison holds (results/report/).
COMPARISON_FIGURES = frozenset(
    {"ap.png", "ap_by_size.png", "speed.png", "losses.png", "ap_vs_iteration.png"}
)
COMPARISON_TABLES = frozenset({"comparison.csv", "comparison.html", "comparison.md"})
#: The first bytes of every PNG file.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _TableParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_tables(text: str) -> list[list[list[str]]]:
    """Every <table> of an HTML page as rows of cell texts (header row first); the stdlib's
    parser, as pandas.read_html needs lxml, which the project does not install."""
    parser = _TableParser()
    parser.feed(text)
    return parser.tables
