from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import InvalidIdentifier
from gateway.identifiers import (
    EU_VAT_PREFIXES,
    make_niss,
    mask_niss,
    normalise_declaration,
    normalise_enterprise_number,
    normalise_foreign_vat,
    normalise_niss,
    normalise_uid,
    parse_employer,
)
from gateway.models import Employer

# Computed by hand from the published rule: 97 - (850730033 mod 97) = 28.
VALID_NISS = "85073003328"
# Born 2005: 97 - (2050101123 mod 97) = 85; the 19xx form would give 56.
VALID_NISS_2000 = "05010112385"
VALID_ENTERPRISE_NUMBER = "0450905686"  # 97 - (04509056 mod 97) = 86


def reason(call: object, *args: str) -> str:
    assert callable(call)
    with pytest.raises(InvalidIdentifier) as caught:
        call(*args)
    return str(caught.value)


# --- NISS -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["85073003328", "85.07.30-033.28", "850730 033 28", " 85073003328 ", "850730-033-28"],
)
def test_niss_accepts_separators(text: str) -> None:
    assert normalise_niss(text) == VALID_NISS


def test_niss_born_2000_form() -> None:
    assert normalise_niss(VALID_NISS_2000) == VALID_NISS_2000


def test_niss_19xx_form_of_the_same_digits_is_also_accepted() -> None:
    # The century is not in the number, so both check-digit forms are valid numbers.
    assert normalise_niss("05010112356") == "05010112356"


@pytest.mark.parametrize("position", range(11))
def test_niss_one_digit_off_fails(position: int) -> None:
    digit = int(VALID_NISS[position])
    changed = VALID_NISS[:position] + str((digit + 1) % 10) + VALID_NISS[position + 1 :]
    with pytest.raises(InvalidIdentifier):
        normalise_niss(changed)


def test_niss_bad_checksum_reason() -> None:
    assert reason(normalise_niss, "85073003329") == "bad checksum"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8507300332", "must be 11 digits"),
        ("850730033281", "must be 11 digits"),
        ("", "must contain only digits"),
        ("8507300332X", "must contain only digits"),
        ("85/07/30 033 28", "must contain only digits"),
    ],
)
def test_niss_shape_errors(text: str, expected: str) -> None:
    assert reason(normalise_niss, text) == expected


@pytest.mark.parametrize(
    ("yymmdd", "kind"),
    [
        ("852730", "BIS, month + 20"),
        ("854730", "BIS, month + 40"),
        ("850030", "month unknown"),
        ("850700", "day unknown"),
        ("852000", "BIS, month and day unknown"),
        ("854000", "BIS + 40, month and day unknown"),
        ("855231", "BIS + 40, December 31"),
    ],
)
def test_niss_bis_and_unknown_date_fields(yymmdd: str, kind: str) -> None:
    niss = make_niss(yymmdd, 33)
    assert normalise_niss(niss) == niss, kind


@pytest.mark.parametrize("month", ["13", "19", "33", "39", "53", "60", "99"])
def test_niss_month_out_of_range(month: str) -> None:
    first9 = f"85{month}30033"
    niss = f"{first9}{97 - int(first9) % 97:02d}"  # right check digits, impossible month
    assert reason(normalise_niss, niss).startswith("month must be 00-12")


def test_niss_day_out_of_range() -> None:
    first9 = "850732033"
    assert reason(normalise_niss, f"{first9}{97 - int(first9) % 97:02d}") == "day must be 00-31"


def test_make_niss() -> None:
    assert make_niss("850730", 33) == VALID_NISS
    assert make_niss("050101", 123, born_2000=True) == VALID_NISS_2000
    with pytest.raises(ValueError, match="6 digits"):
        make_niss("85073", 33)
    with pytest.raises(ValueError, match="serial"):
        make_niss("850730", 1000)
    with pytest.raises(InvalidIdentifier):
        make_niss("851330", 33)


def test_mask_niss() -> None:
    assert mask_niss(VALID_NISS) == "********328"


# --- NISS property test -----------------------------------------------------------------


def check_digits(first9: str, born_2000: bool) -> int:
    return 97 - int(("2" if born_2000 else "") + first9) % 97


def is_valid_by_the_rule(niss: str) -> bool:
    month, day = int(niss[2:4]), int(niss[4:6])
    month_ok = month <= 12 or 20 <= month <= 32 or 40 <= month <= 52
    check = int(niss[9:])
    sums_ok = check in (check_digits(niss[:9], False), check_digits(niss[:9], True))
    return month_ok and day <= 31 and sums_ok


months = st.sampled_from([*range(13), *range(20, 33), *range(40, 53)])


@given(
    yy=st.integers(0, 99),
    mm=months,
    dd=st.integers(0, 31),
    serial=st.integers(0, 999),
    born_2000=st.booleans(),
    position=st.integers(0, 10),
    shift=st.integers(1, 9),
)
def test_niss_property_single_digit_change_is_caught(
    yy: int, mm: int, dd: int, serial: int, born_2000: bool, position: int, shift: int
) -> None:
    first9 = f"{yy:02d}{mm:02d}{dd:02d}{serial:03d}"
    niss = f"{first9}{check_digits(first9, born_2000):02d}"
    assert normalise_niss(niss) == niss

    changed_digit = str((int(niss[position]) + shift) % 10)
    changed = niss[:position] + changed_digit + niss[position + 1 :]
    # The form the number was made with never survives a one-digit change (97 is prime) ...
    assert int(changed[9:]) != check_digits(changed[:9], born_2000)
    # ... but the other century's form may match by chance, so ask the rule itself.
    if is_valid_by_the_rule(changed):
        assert normalise_niss(changed) == changed
    else:
        with pytest.raises(InvalidIdentifier):
            normalise_niss(changed)


# --- Enterprise numbers and employers -----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["0450905686", "0450.905.686", "0450 905 686", "450905686", "450.905.686", "BE0450905686"],
)
def test_enterprise_number_forms(text: str) -> None:
    assert normalise_enterprise_number(text) == VALID_ENTERPRISE_NUMBER


def test_enterprise_number_be_prefix_variants() -> None:
    assert normalise_enterprise_number("be 0450.905.686") == VALID_ENTERPRISE_NUMBER
    assert normalise_enterprise_number("BE450905686") == VALID_ENTERPRISE_NUMBER


def test_enterprise_number_starting_with_1() -> None:
    first8 = "10000000"
    number = f"{first8}{97 - int(first8) % 97:02d}"
    assert normalise_enterprise_number(number) == number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0450905687", "bad checksum"),
        ("0450905676", "bad checksum"),
        ("2450905686", "must start with 0 or 1"),
        ("04509056", "must be 10 digits"),
        ("04509056861", "must be 10 digits"),
        ("0450X05686", "must contain only digits (after an optional BE)"),
        ("FR0450905686", "must contain only digits (after an optional BE)"),
    ],
)
def test_enterprise_number_errors(text: str, expected: str) -> None:
    assert reason(normalise_enterprise_number, text) == expected


def test_enterprise_number_first_digit_2_even_with_right_checksum() -> None:
    first8 = "24509056"
    number = f"{first8}{97 - int(first8) % 97:02d}"
    assert reason(normalise_enterprise_number, number) == "must start with 0 or 1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FR40303265045", "FR40303265045"),
        ("fr 40 303 265 045", "FR40303265045"),
        ("NL-8507.3003.B01", "NL85073003B01"),
        ("DE12", "DE12"),
        ("ATU123456789012", "ATU123456789012"),
    ],
)
def test_foreign_vat(text: str, expected: str) -> None:
    assert normalise_foreign_vat(text) == expected


@pytest.mark.parametrize(
    "text", ["F1234567", "FR1", "FR12345678901234", "12345678", "FR12_34", "", "FRÉ1234"]
)
def test_foreign_vat_malformed(text: str) -> None:
    with pytest.raises(InvalidIdentifier, match="2-letter country code"):
        normalise_foreign_vat(text)


def test_foreign_vat_refuses_belgium() -> None:
    assert "Belgian" in reason(normalise_foreign_vat, "BE0450905686")


@pytest.mark.parametrize("prefix", sorted(EU_VAT_PREFIXES))
def test_foreign_vat_of_each_eu_country(prefix: str) -> None:
    assert normalise_foreign_vat(f"{prefix.lower()} 123456789") == f"{prefix}123456789"


def test_the_eu_prefixes_are_the_26_other_member_states_and_northern_ireland() -> None:
    assert len(EU_VAT_PREFIXES) == 27
    assert {"EL", "XI"} <= EU_VAT_PREFIXES
    assert not {"BE", "GR", "GB", "CH", "NO"} & EU_VAT_PREFIXES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GR123456789", "Greek VAT numbers start with EL, not GR"),
        ("GB123456789", "GB is not in the EU: only Northern Ireland's XI numbers"),
        ("CHE123456789", "CH is not an EU VAT country prefix (EU: AT BG CY"),
        ("US12345678", "US is not an EU VAT country prefix"),
        ("ZZ1234", "ZZ is not an EU VAT country prefix"),
    ],
)
def test_foreign_vat_outside_the_eu_is_refused_with_its_reason(text: str, expected: str) -> None:
    assert reason(normalise_foreign_vat, text).startswith(expected)


def test_parse_employer_names_a_non_eu_prefix() -> None:
    assert reason(parse_employer, "gr 123 456 789") == (
        "expected a foreign VAT number: Greek VAT numbers start with EL, not GR"
    )


def test_parse_employer_belgian() -> None:
    expected = Employer(enterprise_number=VALID_ENTERPRISE_NUMBER)
    assert parse_employer("0450.905.686") == expected
    assert parse_employer("BE 0450 905 686") == expected


def test_parse_employer_foreign() -> None:
    assert parse_employer("fr40303265045") == Employer(foreign_vat="FR40303265045")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0450905687", "expected a Belgian enterprise number: bad checksum"),
        ("BE0450905687", "expected a Belgian enterprise number: bad checksum"),
        ("BEXYZ", "expected a Belgian enterprise number: must contain only digits"),
        ("0450X05686", "expected a Belgian enterprise number: must contain only digits"),
        ("X", "expected a foreign VAT number: must be a 2-letter country code"),
        ("  ", "expected an enterprise number or a foreign VAT number"),
    ],
)
def test_parse_employer_errors_name_the_expected_form(text: str, expected: str) -> None:
    assert reason(parse_employer, text).startswith(expected)


# --- Declaration of works ---------------------------------------------------------------


def test_declaration() -> None:
    assert normalise_declaration("1Y1002V9KLZ6Z") == "1Y1002V9KLZ6Z"
    assert normalise_declaration("  1y1002v9klz6z\n") == "1Y1002V9KLZ6Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1Y1002V9KLZ6I", "the letters I and O are never used"),
        ("1Y1002V9KLZ6o", "the letters I and O are never used"),
        ("1Y1002V9KLZ6", "must be 13 characters"),
        ("1Y1002V9KLZ6ZZ", "must be 13 characters"),
        ("1Y1002-9KLZ6Z", "only letters and digits"),
        ("1Y1002 9KLZ6Z", "only letters and digits"),
        ("", "must be 13 characters"),
    ],
)
def test_declaration_errors(text: str, expected: str) -> None:
    assert reason(normalise_declaration, text) == expected


# --- Badge uids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("04:a2-3B 9c", "04A23B9C"),
        ("04A23B9C", "04A23B9C"),
        ("04.a2.3b.9c", "04A23B9C"),
        (" 04 A2 3B 9C ", "04A23B9C"),
        ("ab", "AB"),
        ("f" * 64, "F" * 64),
    ],
)
def test_uid_normalisation(text: str, expected: str) -> None:
    assert normalise_uid(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", "must be 2 to 64 hex digits"),
        ("", "must be 2 to 64 hex digits"),
        (":-. ", "must be 2 to 64 hex digits"),
        ("f" * 65, "must be 2 to 64 hex digits"),
        ("04:G2", "must be hexadecimal"),
        ("04/A2", "must be hexadecimal"),
    ],
)
def test_uid_errors(text: str, expected: str) -> None:
    assert reason(normalise_uid, text) == expected
