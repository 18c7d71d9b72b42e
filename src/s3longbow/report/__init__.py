"""`longbow report`: a run's report as one self-contained HTML page, and its throughput chart
as a PNG.

Modules: `data` (what the report shows, assembled from the job database's samples, jobs and
invocations), `svg` (the page's charts), `page` (the HTML page) and `chart` (the PNG, drawn by
matplotlib where the `report` extra is installed).
"""

from .data import ReportData, assemble
from .page import render_html

__all__ = ["ReportData", "assemble", "render_html"]
