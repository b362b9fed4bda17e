"""The codes of gateway.checkinatwork.codes are the specification's, all of them, each where
the specification lists it, and classified as docs/checkinatwork.md says.

The specification's text comes from the PDF itself (docs/reference/, free to circulate
with its source, SOURCE.md there) through pdftotext (poppler-utils, which ./dev test
installs); without pdftotext, from spec_excerpt.txt, the same pages as pdftotext gave them,
which a test holds to the PDF.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from lxml import etree

from gateway.checkinatwork import (
    CODES,
    CodeClass,
    CodeScope,
    Remark,
    ValidationStatus,
    classify,
    lookup,
    remark_of,
)
from gateway.checkinatwork.messages import SCHEMA_DIR
from tests.support import REPO

PDF = REPO / "docs/reference/onss-presenceregistration-soap-v1.11/PresenceRegistration_v1.pdf"
EXCERPT = Path(__file__).with_name("spec_excerpt.txt")
EXCERPT_PAGES = (12, 14, 28, 29, 30, 33)
TYPES_XSD = SCHEMA_DIR / "schemas" / "v1" / "PresenceRegistration_types_v1.xsd"
XS = "{http://www.w3.org/2001/XMLSchema}"


def _flat(text: str) -> str:
    return " ".join(text.split())


def _pdf_readable() -> bool:
    return PDF.is_file() and shutil.which("pdftotext") is not None


def _pdf_page(page: int) -> str:
    result = subprocess.run(
        ["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(PDF), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.replace("\f", "")


def _excerpt_pages() -> dict[int, str]:
    pages: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in EXCERPT.read_text(encoding="utf-8").splitlines():
        if line.startswith("=== page "):
            current = pages.setdefault(int(line.removeprefix("=== page ")), [])
        elif current is not None:
            current.append(line)
    return {page: "\n".join(lines) for page, lines in pages.items()}


@cache
def page_text(page: int) -> str:
    """One page of the specification on one line (spaces collapsed)."""
    if _pdf_readable():
        return _flat(_pdf_page(page))
    return _flat(_excerpt_pages()[page])


def test_the_checked_in_excerpt_is_the_pdfs_own_text() -> None:
    assert _pdf_readable(), f"{PDF} and pdftotext (poppler-utils: ./dev test installs it)"
    excerpt = _excerpt_pages()
    assert sorted(excerpt) == list(EXCERPT_PAGES)
    for page, text in excerpt.items():
        assert _flat(text) == _flat(_pdf_page(page)), f"page {page}"


def test_every_code_is_in_the_specification_with_its_text_on_its_page() -> None:
    for code in CODES.values():
        text = page_text(code.page)
        # The table's first line holds the code and the start of its text; a long text
        # wraps in its column, so its words are looked for on the page.
        opening = " ".join(code.text.split()[:3])
        assert f"{code.code} {opening}" in text, (code.code, code.page)
        for word in code.text.split():
            assert word in text, (code.code, word)


def test_the_specification_lists_no_code_that_codes_lacks() -> None:
    register = re.findall(r" (\d{1,2}) Invalid", page_text(12))
    cancel_table = page_text(14).split("Error code Description", 1)[1].split("5.3", 1)[0]
    cancel = re.findall(r"(?:^| )(\d{1,2}) [A-Z]", cancel_table)
    system = re.findall(r"SOA-\d{5}", page_text(33))
    assert set(register) == {"2", "3", "4", "5", "6"}
    assert set(cancel) == {"1", "7", "8", "9", "10", "11"}
    assert len(system) == len(set(system)) == 12
    assert set(register) | set(cancel) | set(system) == set(CODES)
    assert {c.code for c in CODES.values() if c.scope is CodeScope.SYSTEM} == set(system)


def test_every_remark_is_the_specifications_and_the_xsds() -> None:
    pages = page_text(28) + " " + page_text(29)
    enumerated = _enumeration("SearchRemarkType")
    assert {_flat(value) for value in enumerated} == {remark.value for remark in Remark}
    for remark in Remark:
        assert remark.value in pages, remark
    # The XSD's spelling (double spaces) is read as the remark it is.
    assert all(remark_of(value) is not None for value in enumerated)
    assert remark_of("employer  not active") is Remark.EMPLOYER_NOT_ACTIVE
    assert remark_of("LATE REGISTRATION") is None


def test_the_validation_statuses_are_the_xsds_and_the_specifications() -> None:
    assert set(_enumeration("StatusType")) == {status.value for status in ValidationStatus}
    for status in ValidationStatus:
        assert status.value in page_text(30)


def _enumeration(type_name: str) -> list[str]:
    schema = etree.parse(str(TYPES_XSD))
    found = schema.find(f"{XS}simpleType[@name='{type_name}']")
    assert found is not None
    return [str(e.get("value")) for e in found.iter(f"{XS}enumeration")]


def test_an_items_content_errors_are_permanent() -> None:
    for code in ("2", "3", "4", "5", "6", "7", "8", "9", "10", "11"):
        assert classify(code) is CodeClass.PERMANENT, code


def test_the_system_codes_follow_their_cause() -> None:
    assert classify("SOA-00001") is CodeClass.RETRY
    assert classify("SOA-01001") is CodeClass.CONFIGURATION  # not authenticated
    assert classify("SOA-01002") is CodeClass.CONFIGURATION  # not authorized
    assert classify("SOA-02001") is CodeClass.CONFIGURATION  # "retries will not work"
    assert classify("SOA-02002") is CodeClass.RETRY  # "retries should work"
    assert classify("SOA-03005") is CodeClass.CONFIGURATION  # wrong endpoint or variant
    assert classify("SOA-03006") is CodeClass.PERMANENT  # some item's content
    assert classify("1") is CodeClass.CONFIGURATION  # our user may not cancel


def test_unknown_codes_are_classified_conservatively() -> None:
    # A new code in a known family of §7.1 takes the family's class.
    assert classify("SOA-01999") is CodeClass.CONFIGURATION
    assert classify("SOA-02777") is CodeClass.RETRY
    assert classify("SOA-03999") is CodeClass.PERMANENT
    # A system code of an unknown family blames no item: retried, with backoff.
    assert classify("SOA-09001") is CodeClass.RETRY
    # An item refused with a code nobody listed: the service refused it; rejected, kept.
    for code in ("99", "", "E-NEW", "SOA-1"):
        assert classify(code) is CodeClass.PERMANENT, code


def test_codes_are_read_as_written_by_a_liberal_server() -> None:
    assert classify(" 05 ") is CodeClass.PERMANENT
    assert classify("soa-01001") is CodeClass.CONFIGURATION
    known = lookup("05")
    assert known is not None and known.code == "5" and known.page == 12
    assert lookup("42") is None
