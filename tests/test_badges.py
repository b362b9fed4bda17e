from __future__ import annotations

import hashlib
import os
from datetime import date
from pathlib import Path

import pytest

from gateway.badges import (
    BadgeRegister,
    BadgeRegisterWatcher,
    LineError,
    load_badge_register,
)
from gateway.errors import BadgeFileError
from gateway.identifiers import make_niss
from gateway.models import Capacity, Employer, Language

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
