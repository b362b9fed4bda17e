from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from gateway.badges import (
    BadgeRegister,
    BadgeRegisterWatcher,
    BadgeSite,
    LineError,
    load_badge_register,
)
from gateway.config import DEFAULT_CONFIG_PATH
from gateway.errors import BadgeFileError
from gateway.identifiers import make_niss
from gateway.models import Capacity, Channel, Employer, Language
from tests.support import MINIMAL_CONFIG_TOML

HEADER = "badge_uid,niss,employer,name,language,capacity,valid_from,valid_until"
NISS_A = make_niss("850730", 33)  # 85073003328
NISS_B = make_niss("920114", 125)
NISS_C = make_niss("054512", 7, born_2000=True)  # BIS number, born 2005
ENTERPRISE = "0450.905.686"
LINE_A = f"04:a2:3b:9c,{NISS_A},{ENTERPRISE},Marie Dupont,fr,employee,2024-09-01,"
LINE_B = f"11223344,{NISS_B},BE0450905686,Jan Peeters,NL,self_employed,,2025-12-31"
LINE_C = f"AABBCCDD,{NISS_C},FR40303265045,Ana Silva,en,Posted-Worker,,"


def write(tmp_path: Path, *lines: str, name: str = "badges.csv") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def load(tmp_path: Path, *lines: str) -> BadgeRegister:
    return load_badge_register(write(tmp_path, *lines))


def where(errors: tuple[LineError, ...]) -> list[tuple[int, str | None]]:
    return [(error.line, error.field) for error in errors]


# --- Good files ---------------------------------------------------------------------------


def test_good_file_with_commas(tmp_path: Path) -> None:
    register = load(tmp_path, HEADER, LINE_A, LINE_B, LINE_C)

    assert register.errors == ()
    assert sorted(register.workers) == ["04A23B9C", "11223344", "AABBCCDD"]
    marie = register.lookup("04A23B9C")
    assert marie is not None
    assert marie.niss == NISS_A
    assert marie.employer == Employer(enterprise_number="0450905686")
    assert marie.name == "Marie Dupont"
    assert marie.language is Language.FR
    assert marie.capacity is Capacity.EMPLOYEE
    assert (marie.valid_from, marie.valid_until) == (date(2024, 9, 1), None)
    jan = register.workers["11223344"]
    assert jan.language is Language.NL
    assert jan.capacity is Capacity.SELF_EMPLOYED
    assert (jan.valid_from, jan.valid_until) == (None, date(2025, 12, 31))
    ana = register.workers["AABBCCDD"]
    assert ana.employer == Employer(foreign_vat="FR40303265045")
    assert ana.capacity is Capacity.POSTED_WORKER


def test_good_file_with_semicolons_any_column_order_and_case(tmp_path: Path) -> None:
    register = load(
        tmp_path,
        "Name;NISS;Badge_UID;Capacity;Language;Employer",
        f"Dupont, Marie;{NISS_A};04A23B9C;employee;FR;{ENTERPRISE}",
        f"Peeters, Jan;{NISS_B};11223344;temp;nl;0450905686",
    )

    assert register.errors == ()
    assert register.workers["04A23B9C"].name == "Dupont, Marie"
    assert register.workers["11223344"].capacity is Capacity.TEMP
    assert register.workers["11223344"].valid_from is None


def test_lookup_normalises_the_uid_and_tolerates_garbage(tmp_path: Path) -> None:
    register = load(tmp_path, HEADER, LINE_A)

    assert register.lookup("04-A2-3B-9C") is register.workers["04A23B9C"]
    assert register.lookup("04a23b9c") is register.workers["04A23B9C"]
    assert register.lookup("FFFF") is None
    assert register.lookup("not a uid") is None
    assert register.lookup("") is None


def test_comments_blank_lines_and_excel_empty_rows_are_skipped(tmp_path: Path) -> None:
    register = load(
        tmp_path,
        "# badge register of Propre SA",
        "",
        HEADER,
        "# Marie starts in September",
        LINE_A,
        "   ",
        ",,,,,,,",
        "  # indented comment",
        f"11223344,{NISS_B},0450905686,Jan,nl,employee,2025-13-01,",
    )

    assert sorted(register.workers) == ["04A23B9C"]
    assert where(register.errors) == [(9, "valid_from")]


def test_quoted_comma_in_a_field(tmp_path: Path) -> None:
    register = load(
        tmp_path, HEADER, f'04A23B9C,{NISS_A},{ENTERPRISE},"Dupont, Marie",fr,employee,,'
    )

    assert register.errors == ()
    assert register.workers["04A23B9C"].name == "Dupont, Marie"


def test_utf8_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "badges.csv"
    text = "\r\n".join([HEADER, LINE_A, LINE_B.replace("Jan Peeters", "Zoë Müller")]) + "\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    register = load_badge_register(path)

    assert register.errors == ()
    assert register.workers["11223344"].name == "Zoë Müller"


def test_sha256_is_of_the_file_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, LINE_A)
    register = load_badge_register(path)

    assert register.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert register.path == path


def test_register_is_immutable(tmp_path: Path) -> None:
    register = load(tmp_path, HEADER, LINE_A)

    with pytest.raises(TypeError):
        register.workers["FFFF"] = register.workers["04A23B9C"]  # type: ignore[index]


# --- Bad lines ----------------------------------------------------------------------------

BAD_LINES = {
    "uid not hex": (f"04A2ZZ,{NISS_C},{ENTERPRISE},X,fr,employee,,", "badge_uid"),
    "uid empty": (f",{NISS_C},{ENTERPRISE},X,fr,employee,,", "badge_uid"),
    "niss checksum": (f"55667788,85073003329,{ENTERPRISE},X,fr,employee,,", "niss"),
    "niss length": (f"55667788,8507300332,{ENTERPRISE},X,fr,employee,,", "niss"),
    "niss month": (f"55667788,85133003328,{ENTERPRISE},X,fr,employee,,", "niss"),
    "employer checksum": (f"55667788,{NISS_C},0450905687,X,fr,employee,,", "employer"),
    "employer first digit": (f"55667788,{NISS_C},2450905686,X,fr,employee,,", "employer"),
    "employer foreign": (f"55667788,{NISS_C},F1,X,fr,employee,,", "employer"),
    "name empty": (f"55667788,{NISS_C},{ENTERPRISE},  ,fr,employee,,", "name"),
    "language": (f"55667788,{NISS_C},{ENTERPRISE},X,es,employee,,", "language"),
    "capacity": (f"55667788,{NISS_C},{ENTERPRISE},X,fr,boss,,", "capacity"),
    "valid_from format": (
        f"55667788,{NISS_C},{ENTERPRISE},X,fr,employee,01/09/2024,",
        "valid_from",
    ),
    "valid_from no such day": (
        f"55667788,{NISS_C},{ENTERPRISE},X,fr,employee,2024-02-30,",
        "valid_from",
    ),
    "valid_until format": (
        f"55667788,{NISS_C},{ENTERPRISE},X,fr,employee,,20241231",
        "valid_until",
    ),
    "valid_until before valid_from": (
        f"55667788,{NISS_C},{ENTERPRISE},X,fr,employee,2024-09-01,2024-08-31",
        "valid_until",
    ),
    "too few fields": (f"55667788,{NISS_C},{ENTERPRISE},X,fr,employee,", None),
    "too many fields": (f"55667788,{NISS_C},{ENTERPRISE},X,fr,employee,,,", None),
    "unquoted comma": (f"55667788,{NISS_C},{ENTERPRISE},Dupont, Marie,fr,employee,,", None),
    "bad quoting": (f'55667788,{NISS_C},{ENTERPRISE},"Dupont"x,fr,employee,,', None),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_bad_line_is_reported_and_the_rest_loads(tmp_path: Path, case: str) -> None:
    bad_line, field = BAD_LINES[case]
    register = load(tmp_path, "# comment", HEADER, LINE_A, bad_line, LINE_B)

    assert where(register.errors) == [(4, field)]
    assert sorted(register.workers) == ["04A23B9C", "11223344"]


def test_every_bad_field_of_a_line_is_reported(tmp_path: Path) -> None:
    register = load(tmp_path, HEADER, f"04A23B9C,{NISS_A},{ENTERPRISE},X,es,boss,,")

    assert where(register.errors) == [(2, "language"), (2, "capacity")]
    assert register.workers == {}


def test_line_error_text(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, LINE_A, f"55667788,{NISS_B},{ENTERPRISE},X,xx,employee,,")
    (error,) = load_badge_register(path).errors

    assert str(error) == f"{path}:3: language: must be one of fr, nl, de, en (got 'xx')"


def test_line_error_without_field(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, "04A23B9C,x")
    (error,) = load_badge_register(path).errors

    assert str(error) == f"{path}:2: expected 8 fields, got 2"


def test_bad_niss_is_masked_in_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, f"55667788,85073003329,{ENTERPRISE},X,fr,employee,,")
    (error,) = load_badge_register(path).errors

    assert str(error) == f"{path}:2: niss: bad checksum (got '********329')"


@pytest.mark.parametrize(
    "bad_niss", ["85.07.30-033.29", "850730033281", "8507300332", "85073003328X"]
)
def test_no_error_shows_a_near_complete_niss(tmp_path: Path, bad_niss: str) -> None:
    register = load(tmp_path, HEADER, f"55667788,{bad_niss},{ENTERPRISE},X,fr,employee,,")

    (error,) = register.errors
    assert "8507300" not in str(error)
    assert str(error).endswith(f"(got '{'*' * (len(bad_niss) - 3)}{bad_niss[-3:]}')")


def test_a_niss_in_the_wrong_column_is_masked_too(tmp_path: Path) -> None:
    # Columns swapped by hand: the NISS lands in the employer column.
    register = load(tmp_path, HEADER, f"55667788,{ENTERPRISE},{NISS_A},X,fr,employee,,")

    text = "\n".join(str(error) for error in register.errors)
    assert where(register.errors) == [(2, "niss"), (2, "employer")]
    assert NISS_A not in text
    assert "********328" in text


def test_non_utf8_byte_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "badges.csv"
    cp1252_line = f"55667788,{NISS_C},{ENTERPRISE},Ren\xe9e,fr,employee,,".encode("cp1252")
    path.write_bytes(
        "\n".join([HEADER, LINE_A]).encode()
        + b"\n"
        + cp1252_line
        + b"\n"
        + LINE_B.replace("Jan", "Zoë").encode()
        + b"\n"
    )

    register = load_badge_register(path)

    assert where(register.errors) == [(3, None)]
    assert "byte 0xe9" in register.errors[0].message
    assert sorted(register.workers) == ["04A23B9C", "11223344"]
    assert register.workers["11223344"].name == "Zoë Peeters"


# --- Duplicate uids -----------------------------------------------------------------------


def test_duplicate_uid_refuses_both_lines(tmp_path: Path) -> None:
    register = load(
        tmp_path,
        HEADER,
        LINE_A,
        LINE_B,
        f"04-A2-3B-9C,{NISS_C},{ENTERPRISE},Other,fr,employee,,",
    )

    assert sorted(register.workers) == ["11223344"]
    assert where(register.errors) == [(2, "badge_uid"), (4, "badge_uid")]
    assert register.errors[0].message == "uid also on line 4 (got '04A23B9C')"
    assert register.errors[1].message == "uid also on line 2 (got '04A23B9C')"


def test_three_lines_with_the_same_uid_are_all_refused(tmp_path: Path) -> None:
    register = load(
        tmp_path,
        HEADER,
        LINE_A,
        LINE_B,
        LINE_A.replace(NISS_A, NISS_B),
        LINE_A.replace(NISS_A, NISS_C),
    )

    assert sorted(register.workers) == ["11223344"]
    assert where(register.errors) == [(2, "badge_uid"), (4, "badge_uid"), (5, "badge_uid")]
    assert register.errors[0].message.startswith("uid also on lines 4, 5")


def test_duplicate_uid_counts_even_when_the_other_line_is_bad(tmp_path: Path) -> None:
    # Someone is mid-edit: we cannot tell which of the two lines is meant to hold the badge.
    register = load(tmp_path, HEADER, LINE_A, LINE_A.replace(",fr,", ",xx,"))

    assert register.workers == {}
    assert where(register.errors) == [(2, "badge_uid"), (3, "language"), (3, "badge_uid")]


# --- Unusable files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ((), "no header line"),
        (("# only a comment", ""), "no header line"),
        (("badge_uid,niss,employer,name,language", LINE_A), "missing required column(s) capacity"),
        ((LINE_A, LINE_B), "missing required column(s) badge_uid, niss"),
        ((HEADER + ",NISS", LINE_A), "column named twice: niss"),
    ],
)
def test_unusable_file(tmp_path: Path, lines: tuple[str, ...], expected: str) -> None:
    path = write(tmp_path, *lines)

    with pytest.raises(BadgeFileError) as caught:
        load_badge_register(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"

    with pytest.raises(BadgeFileError, match=r"nowhere\.csv: cannot read"):
        load_badge_register(path)


def test_header_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "badges.csv"
    path.write_bytes(HEADER.encode("utf-16"))

    with pytest.raises(BadgeFileError, match="header line is not UTF-8"):
        load_badge_register(path)


def test_header_with_bad_quoting(tmp_path: Path) -> None:
    path = write(tmp_path, '"badge_uid"x,niss', LINE_A)

    with pytest.raises(BadgeFileError, match="header line has bad quoting"):
        load_badge_register(path)


def test_comment_above_the_header_may_hold_any_bytes(tmp_path: Path) -> None:
    path = tmp_path / "badges.csv"
    path.write_bytes(b"# export de Propri\xe9t\xe9s SA\n" + f"{HEADER}\n{LINE_A}\n".encode())

    assert sorted(load_badge_register(path).workers) == ["04A23B9C"]


def test_unknown_columns_are_ignored(tmp_path: Path) -> None:
    register = load(tmp_path, HEADER + ",notes", LINE_A + ",keys in locker 3")

    assert register.errors == ()
    assert sorted(register.workers) == ["04A23B9C"]


# --- Watcher ------------------------------------------------------------------------------


def rewrite(path: Path, *lines: str, mtime_ns: int) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_watcher_reloads_only_on_change(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, LINE_A)
    watcher = BadgeRegisterWatcher(path)
    first = watcher.current

    assert watcher.refresh() is None
    assert watcher.current is first

    rewrite(path, HEADER, LINE_A, LINE_B, mtime_ns=path.stat().st_mtime_ns + 10**9)
    second = watcher.refresh()

    assert second is not None
    assert watcher.current is second
    assert sorted(second.workers) == ["04A23B9C", "11223344"]
    assert sorted(first.workers) == ["04A23B9C"]  # a tap holding the old snapshot keeps it
    assert watcher.refresh() is None
    assert watcher.last_error is None


def test_watcher_touch_without_new_content_is_no_change(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, LINE_A)
    watcher = BadgeRegisterWatcher(path)
    first = watcher.current

    rewrite(path, HEADER, LINE_A, mtime_ns=path.stat().st_mtime_ns + 10**9)

    assert watcher.refresh() is None
    assert watcher.refresh(force=True) is None
    assert watcher.current is first


def test_watcher_force_reloads_even_with_the_same_stat(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, LINE_A)
    watcher = BadgeRegisterWatcher(path)
    mtime_ns = path.stat().st_mtime_ns
    # Same size, same mtime, same inode: only a forced refresh (SIGHUP) can see this.
    rewrite(path, HEADER, LINE_A.replace("Marie", "Maria"), mtime_ns=mtime_ns)

    assert watcher.refresh() is None
    register = watcher.refresh(force=True)
    assert register is not None
    assert register.workers["04A23B9C"].name == "Maria Dupont"


def test_watcher_keeps_the_register_when_the_file_disappears(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, LINE_A)
    watcher = BadgeRegisterWatcher(path)
    first = watcher.current

    path.unlink()

    assert watcher.refresh() is None
    assert watcher.current is first
    assert watcher.last_error is not None
    assert str(path) in watcher.last_error
    assert watcher.refresh(force=True) is None
    assert watcher.current is first

    write(tmp_path, HEADER, LINE_B)
    back = watcher.refresh()

    assert back is not None
    assert sorted(back.workers) == ["11223344"]
    assert watcher.last_error is None


def test_watcher_keeps_the_register_when_the_header_breaks(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, LINE_A)
    watcher = BadgeRegisterWatcher(path)
    first = watcher.current

    rewrite(path, "badge_uid,name", "04A23B9C,Marie", mtime_ns=path.stat().st_mtime_ns + 10**9)

    assert watcher.refresh() is None
    assert watcher.current is first
    assert watcher.last_error is not None
    assert "missing required column(s)" in watcher.last_error


def test_watcher_line_errors_do_not_block_a_reload(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, LINE_A)
    watcher = BadgeRegisterWatcher(path)

    rewrite(path, HEADER, LINE_A, "bad", mtime_ns=path.stat().st_mtime_ns + 10**9)
    register = watcher.refresh()

    assert register is not None
    assert where(register.errors) == [(3, None)]
    assert watcher.last_error is None


def test_watcher_keeps_the_register_when_only_the_header_is_left(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, LINE_A, LINE_B)
    watcher = BadgeRegisterWatcher(path)
    first = watcher.current

    rewrite(path, HEADER, mtime_ns=path.stat().st_mtime_ns + 10**9)  # a save gone wrong

    assert watcher.refresh() is None
    assert watcher.current is first
    assert watcher.last_error == (
        f"{path}: no worker: the file holds only its header; keeping the previous register"
    )
    assert watcher.refresh() is None  # looked at once: not reloaded at every poll
    assert watcher.refresh(force=True) is None
    assert watcher.current is first and watcher.last_error is not None

    rewrite(path, HEADER, LINE_C, mtime_ns=path.stat().st_mtime_ns + 10**9)
    fixed = watcher.refresh()

    assert fixed is not None and sorted(fixed.workers) == ["AABBCCDD"]
    assert watcher.last_error is None


def test_watcher_keeps_the_register_when_every_line_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, LINE_A)
    watcher = BadgeRegisterWatcher(path)
    first = watcher.current
    bad_niss = LINE_B.replace(NISS_B, NISS_B[:-1] + str((int(NISS_B[-1]) + 1) % 10))

    rewrite(path, HEADER, bad_niss, "garbage", mtime_ns=path.stat().st_mtime_ns + 10**9)

    assert watcher.refresh() is None
    assert watcher.current is first
    assert watcher.last_error is not None
    assert watcher.last_error.startswith(f"{path}: no worker: every line refused (2 error(s),")
    assert f"the first: {path}:2: niss:" in watcher.last_error
    assert NISS_B[:-1] not in watcher.last_error  # masked, as every message about a NISS
    assert watcher.last_error.endswith("keeping the previous register")


def test_watcher_starts_on_a_file_without_workers_and_says_why(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER)
    watcher = BadgeRegisterWatcher(path)  # nothing to keep: loaded as it is, as ever

    assert dict(watcher.current.workers) == {}
    assert watcher.last_error == f"{path}: no worker: the file holds only its header"

    rewrite(path, HEADER, "garbage", mtime_ns=path.stat().st_mtime_ns + 10**9)
    refused = watcher.refresh()

    assert refused is not None and where(refused.errors) == [(2, None)]  # its lines are shown
    assert watcher.last_error is not None and "every line refused" in watcher.last_error

    rewrite(path, HEADER, LINE_A, mtime_ns=path.stat().st_mtime_ns + 10**9)
    assert watcher.refresh() is not None
    assert watcher.last_error is None


def test_no_worker_names_the_file_and_the_first_refused_line(tmp_path: Path) -> None:
    assert load(tmp_path, HEADER, LINE_A).no_worker() is None
    empty = load(tmp_path, "# exported by Excel", HEADER, "", ",,,,,,,")
    assert empty.no_worker() == f"{empty.path}: no worker: the file holds only its header"
    refused = load(tmp_path, HEADER, "x,y", LINE_A.replace(",fr,", ",xx,"))
    message = refused.no_worker()
    assert message is not None
    assert message.startswith(f"{refused.path}: no worker: every line refused (2 error(s)")
    assert f"{refused.path}:2: expected 8 fields, got 2" in message


def test_watcher_refuses_to_start_without_a_usable_file(tmp_path: Path) -> None:
    with pytest.raises(BadgeFileError):
        BadgeRegisterWatcher(tmp_path / "missing.csv")
    with pytest.raises(BadgeFileError):
        BadgeRegisterWatcher(write(tmp_path, "just,some,words"))


def test_a_whole_windows_1252_file_is_read_as_such(tmp_path: Path) -> None:
    path = tmp_path / "badges.csv"
    renee = f"55667788,{NISS_C},{ENTERPRISE},Ren\xe9e Hélène,fr,employee,,"
    path.write_bytes("\r\n".join([HEADER, LINE_A, renee, ""]).encode("cp1252"))

    register = load_badge_register(path)

    assert register.errors == ()
    assert register.encoding == "cp1252"
    assert register.workers["55667788"].name == "Renée Hélène"


def test_a_utf8_file_with_accents_stays_utf8(tmp_path: Path) -> None:
    path = tmp_path / "badges.csv"
    path.write_text("\n".join([HEADER, LINE_B.replace("Jan", "Zoë"), ""]), encoding="utf-8")

    register = load_badge_register(path)

    assert register.encoding == "utf-8"
    assert register.workers["11223344"].name == "Zoë Peeters"


# --- Checkinatwork: the limosa and declaration columns (issue 16) ------------------------------

POSTED_HEADER = "badge_uid,niss,limosa,employer,name,language,capacity,declaration"
LIMOSA = "24910158641968060"  # the specification's example (PresenceRegistration v1, p. 10)
WORKPLACE_A, WORKPLACE_B = "1Y1000NF9KCQZ", "1Y1000003EQCZ"
CAW_SITE = BadgeSite(Channel.CHECKINATWORK, (WORKPLACE_A, WORKPLACE_B))
CIAO_SITE = BadgeSite(Channel.CIAO, ("A1B2C3D4E5F6G",))
POSTED_LINE = f"AABBCCDD,,{LIMOSA},FR40303265045,Ana Silva,en,posted-worker,"
NISS_LINE = f"04A23B9C,{NISS_A},,{ENTERPRISE},Marie Dupont,fr,employee,"


def load_for(tmp_path: Path, site: BadgeSite | None, *lines: str) -> BadgeRegister:
    return load_badge_register(write(tmp_path, POSTED_HEADER, *lines), site)


def test_a_posted_worker_row_by_limosa_number(tmp_path: Path) -> None:
    register = load_for(tmp_path, CAW_SITE, POSTED_LINE, NISS_LINE)

    assert register.errors == ()
    ana = register.workers["AABBCCDD"]
    assert (ana.niss, ana.limosa, ana.declaration) == (None, LIMOSA, None)
    assert ana.employer == Employer(foreign_vat="FR40303265045")
    assert ana.person == "Limosa **************060"
    marie = register.workers["04A23B9C"]
    assert (marie.niss, marie.limosa) == (NISS_A, None)


def test_a_limosa_number_is_normalised_to_upper_case(tmp_path: Path) -> None:
    register = load_for(tmp_path, None, POSTED_LINE.replace(LIMOSA, " ab-2491-0158 "))

    assert register.errors == ()
    assert register.workers["AABBCCDD"].limosa == "AB-2491-0158"


@pytest.mark.parametrize(
    ("limosa", "message"),
    [
        ("2491 0158/641968060", "only letters, digits and '-'"),
        ("-24910158641968060", "only letters, digits and '-'"),
        ("9" * 65, "is longer than 64 characters"),
    ],
)
def test_a_bad_limosa_number_is_named_by_its_field_and_masked(
    tmp_path: Path, limosa: str, message: str
) -> None:
    path = write(tmp_path, POSTED_HEADER, POSTED_LINE.replace(LIMOSA, limosa), NISS_LINE)

    register = load_badge_register(path, CAW_SITE)

    (error,) = register.errors
    assert (error.line, error.field) == (2, "limosa")
    assert str(error) == (
        f"{path}:2: limosa: {message} (got '{'*' * (len(limosa) - 3)}{limosa[-3:]}')"
    )
    assert sorted(register.workers) == ["04A23B9C"]


def test_a_row_with_both_niss_and_limosa_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, POSTED_HEADER, POSTED_LINE.replace(",,", f",{NISS_B},", 1), NISS_LINE)

    register = load_badge_register(path, CAW_SITE)

    (error,) = register.errors
    assert str(error) == f"{path}:2: limosa: give a NISS or a Limosa number, not both"
    assert NISS_B not in str(error) and LIMOSA not in str(error)
    assert sorted(register.workers) == ["04A23B9C"]


def test_a_row_with_neither_niss_nor_limosa_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, POSTED_HEADER, POSTED_LINE.replace(LIMOSA, ""), NISS_LINE)

    register = load_badge_register(path, CAW_SITE)

    (error,) = register.errors
    assert str(error) == (
        f"{path}:2: niss: is empty (a posted worker without one: the limosa column)"
    )
    assert sorted(register.workers) == ["04A23B9C"]


def test_a_limosa_row_is_refused_on_a_ciao_site_and_loads_without_a_site(tmp_path: Path) -> None:
    path = write(tmp_path, POSTED_HEADER, POSTED_LINE, NISS_LINE)

    on_ciao = load_badge_register(path, CIAO_SITE)
    (error,) = on_ciao.errors
    assert str(error) == (
        f"{path}:2: limosa: CIaO registers a person by NISS: give this worker's NISS"
    )
    assert sorted(on_ciao.workers) == ["04A23B9C"]
    assert sorted(load_badge_register(path).workers) == ["04A23B9C", "AABBCCDD"]
    assert sorted(load_badge_register(path, CAW_SITE).workers) == ["04A23B9C", "AABBCCDD"]


def test_a_row_of_one_of_the_sites_declarations(tmp_path: Path) -> None:
    register = load_for(
        tmp_path,
        CAW_SITE,
        POSTED_LINE + WORKPLACE_B.lower(),
        NISS_LINE + f" {WORKPLACE_A} ",
    )

    assert register.errors == ()
    assert register.workers["AABBCCDD"].declaration == WORKPLACE_B
    assert register.workers["04A23B9C"].declaration == WORKPLACE_A


def test_a_declaration_not_of_the_site_is_refused_naming_the_sites(tmp_path: Path) -> None:
    path = write(tmp_path, POSTED_HEADER, POSTED_LINE + "1Y1000000000Z", NISS_LINE)

    register = load_badge_register(path, CAW_SITE)

    (error,) = register.errors
    assert str(error) == (
        f"{path}:2: declaration: not one of this site's: {WORKPLACE_A}, {WORKPLACE_B}"
        " (got '1Y1000000000Z')"
    )
    assert sorted(register.workers) == ["04A23B9C"]
    ciao = write(tmp_path, POSTED_HEADER, NISS_LINE + WORKPLACE_A, name="ciao.csv")
    (error,) = load_badge_register(ciao, CIAO_SITE).errors
    assert error.field == "declaration"
    assert error.message.startswith("not one of this site's: A1B2C3D4E5F6G")


def test_without_a_site_a_declaration_is_checked_for_its_format_only(tmp_path: Path) -> None:
    register = load_for(
        tmp_path,
        None,
        POSTED_LINE + "1Y1000000000Z",
        NISS_LINE + "1Y-1000",
        f"11223344,{NISS_B},,{ENTERPRISE},Jan,nl,employee," + "1" * 14,
    )

    assert register.workers["AABBCCDD"].declaration == "1Y1000000000Z"
    assert [(e.line, e.field, e.message) for e in register.errors] == [
        (3, "declaration", "only letters and digits (got '1Y-1000')"),
        (4, "declaration", f"must be 1 to 13 characters (got '{'1' * 14}')"),
    ]


def test_a_register_without_the_new_columns_loads_against_either_site(tmp_path: Path) -> None:
    for site in (None, CIAO_SITE, CAW_SITE):
        register = load_badge_register(write(tmp_path, HEADER, LINE_A, LINE_B, LINE_C), site)

        assert register.errors == ()
        assert sorted(register.workers) == ["04A23B9C", "11223344", "AABBCCDD"]
        assert all(w.limosa is None and w.declaration is None for w in register.workers.values())


def test_the_watcher_checks_reloads_against_its_site(tmp_path: Path) -> None:
    path = write(tmp_path, POSTED_HEADER, NISS_LINE)
    watcher = BadgeRegisterWatcher(path, CIAO_SITE)

    rewrite(path, POSTED_HEADER, NISS_LINE, POSTED_LINE, mtime_ns=path.stat().st_mtime_ns + 10**9)
    register = watcher.refresh()

    assert register is not None
    assert where(register.errors) == [(3, "limosa")]
    assert sorted(register.workers) == ["04A23B9C"]


# --- `badges check`, with and without the site of a configuration -------------------------

CAW_CONFIG = f"""\
[site]
name = "Chantier"
channel = "checkinatwork"
declaration = "{WORKPLACE_A}"
declarations = ["{WORKPLACE_B}"]

[badges]
file = "/srv/badges.csv"
"""


def badges_check(path: Path, config: Path | None) -> subprocess.CompletedProcess[str]:
    prefix = ["--config", str(config)] if config is not None else []
    return subprocess.run(
        [sys.executable, "-m", "gateway", *prefix, "badges", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_badges_check_checks_rows_against_the_site_of_the_configuration(tmp_path: Path) -> None:
    path = write(tmp_path, POSTED_HEADER, POSTED_LINE + WORKPLACE_B, NISS_LINE)
    caw = tmp_path / "caw.toml"
    caw.write_text(CAW_CONFIG, encoding="utf-8")
    ciao = tmp_path / "ciao.toml"
    ciao.write_text(MINIMAL_CONFIG_TOML, encoding="utf-8")

    fits = badges_check(path, caw)
    assert fits.returncode == 0, fits.stderr
    assert f"{path}: checked against the site of {caw}" in fits.stdout
    assert f"{path}: 2 badge(s) loaded, 0 refused" in fits.stdout

    refused = badges_check(path, ciao)
    assert refused.returncode == 1
    assert f"{path}:2: limosa: CIaO registers a person by NISS" in refused.stderr
    assert f"{path}:2: declaration: not one of this site's: A1B2C3D4E5F6G" in refused.stderr
    assert LIMOSA not in refused.stderr + refused.stdout
    assert f"{path}: 1 badge(s) loaded," in refused.stdout


def test_badges_check_without_a_configuration_checks_the_rows_alone(tmp_path: Path) -> None:
    path = write(tmp_path, POSTED_HEADER, POSTED_LINE + WORKPLACE_B, NISS_LINE)

    alone = badges_check(path, tmp_path / "no-such.toml")

    assert alone.returncode == 0, alone.stderr
    assert "checked against the site" not in alone.stdout
    assert f"{path}: 2 badge(s) loaded, 0 refused" in alone.stdout
    if not DEFAULT_CONFIG_PATH.exists():  # no --config: the default file, absent here
        assert badges_check(path, None).stdout == alone.stdout


def test_badges_check_with_a_bad_configuration_exits_1_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, POSTED_HEADER, NISS_LINE)
    bad = tmp_path / "bad.toml"
    bad.write_text(CAW_CONFIG.replace(WORKPLACE_B, "1Y-B"), encoding="utf-8")

    checked = badges_check(path, bad)

    assert checked.returncode == 1
    assert "site.declarations" in checked.stderr


def test_a_register_of_posted_workers_only_needs_no_niss_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "badge_uid,limosa,employer,name,language,capacity",
        f"AABBCCDD,{LIMOSA},FR40303265045,Ana Silva,en,posted-worker",
        "11223344,,FR40303265045,Piotr,en,posted-worker",
    )

    register = load_badge_register(path, CAW_SITE)

    assert sorted(register.workers) == ["AABBCCDD"]
    assert [(e.line, e.field, e.message) for e in register.errors] == [
        (3, "niss", "is empty (a posted worker without one: the limosa column)")
    ]
    with pytest.raises(BadgeFileError, match="missing required column"):
        load_badge_register(write(tmp_path, "badge_uid,employer,name,language,capacity", "x"))
