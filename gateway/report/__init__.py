"""The employer's proof: the signed evidence export, the outage analysis, the HTML report.

`export` writes and verifies an export directory (entries, report, signed manifest);
`outages` reads a chain into outages and the registrations they delayed; `document`
renders the self-contained report, in the four languages of `texts`.

May import: models, evidence, journal. Nothing above it.
"""

from gateway.report.document import ReportContext, render_report
from gateway.report.export import ExportCheck, Period, export, verify_export
from gateway.report.outages import (
    Analysis,
    Episode,
    Outage,
    OutageKind,
    Resolution,
    Unconfirmed,
    analyse,
)

__all__ = [
    "Analysis",
    "Episode",
    "ExportCheck",
    "Outage",
    "OutageKind",
    "Period",
    "ReportContext",
    "Resolution",
    "Unconfirmed",
    "analyse",
    "export",
    "render_report",
    "verify_export",
]
