"""Checks on a candidate's digits: dates, checksums, numbering plans.

Each function takes the candidate's ASCII digits (separators removed) and, where the
written shape matters, the lengths of its digit groups as written (``(6, 7)`` for
``900101-1234567``, ``(13,)`` for the same number written without a separator).
"""
from __future__ import annotations

from datetime import date

# -- 주민등록번호 / 외국인등록번호 ------------------------------------------------------------

# The 7th digit gives sex, century and citizenship: 1/2 Koreans born 1900-1999, 3/4 born
# 2000-, 5/6 and 7/8 foreigners of the same centuries, 9/0 Koreans born 1800-1899.
_RRN_CENTURY = {"1": 1900, "2": 1900, "5": 1900, "6": 1900, "3": 2000, "4": 2000, "7": 2000,
                "8": 2000, "9": 1800, "0": 1800}
_RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
# Numbers issued from 2020-10-01 carry random digits after the 7th: no checksum.
RRN_RANDOM_SINCE = date(2020, 10, 1)


def rrn_birth_date(digits: str) -> date | None:
    """The birth date the first seven digits encode, or None when they encode none."""
    if len(digits) != 13:
        return None
    century = _RRN_CENTURY[digits[6]]
    try:
        born = date(century + int(digits[0:2]), int(digits[2:4]), int(digits[4:6]))
    except ValueError:
        return None
    return born if born <= date.today() else None


def rrn_legacy_checksum_ok(digits: str) -> bool:
    """The check digit of numbers issued before October 2020 (foreigners' numbers use 13
    where citizens' use 11)."""
    total = sum(int(d) * w for d, w in zip(digits, _RRN_WEIGHTS, strict=False))
    base = 13 if digits[6] in "5678" else 11
    return (base - total % 11) % 10 == int(digits[12])


def rrn_ok(digits: str, groups: tuple[int, ...], *, keyword_near: bool) -> bool:
    """A 주민등록번호/외국인등록번호.

    Rule: 13 digits written whole or as 6-7, a real birth date (not in the future) in the
    century the 7th digit gives, and then either
      * the legacy check digit holds (every number issued before October 2020), or
      * the 7th digit is 1-8 and the number is written in its own 6-7 shape
        (``YYMMDD-GNNNNNN``), or a 주민/외국인등록 keyword stands just before it.
    Numbers issued since October 2020 have no check digit, so they are recognised by shape
    and context; a bare 13-digit run without a valid check digit and without a keyword is
    not taken (it is far more often an order or invoice number).
    The 9/0 digits (born in the 1800s) are only taken with a valid check digit.
    """
    if len(digits) != 13 or groups not in ((13,), (6, 7)):
        return False
    if rrn_birth_date(digits) is None:
        return False
    if rrn_legacy_checksum_ok(digits):
        return True
    if digits[6] in "90":
        return False
    return groups == (6, 7) or keyword_near


# -- cards ------------------------------------------------------------------------------

# A digit's value, and its value doubled (minus 9 when over 9), looked up: no Python-level loop.
_LUHN_SAME = {str(d): d for d in range(10)}.__getitem__
_LUHN_DOUBLED = {str(d): 2 * d - 9 * (d > 4) for d in range(10)}.__getitem__


def luhn_ok(digits: str) -> bool:
    """The Luhn check (ASCII digits): from the right, every second digit doubled."""
    return (sum(map(_LUHN_SAME, digits[-1::-2])) + sum(map(_LUHN_DOUBLED, digits[-2::-2]))) % 10 == 0


def card_issuer_ok(digits: str) -> bool:
    """The issuer prefixes of cards used in Korea: Visa 4, Mastercard 51-55 and 2221-2720,
    Amex 34/37, JCB 3528-3589, Diners 30/36/38, UnionPay 62/81, Discover 60/64/65 and the
    domestic-only 9 range (BC, 국내전용)."""
    first = digits[0]
    if first in "49":
        return True
    two = int(digits[:2])
    if first == "5":
        return 51 <= two <= 55
    if first == "2":
        return 2221 <= int(digits[:4]) <= 2720
    if first == "3":
        return two in (30, 34, 36, 37, 38) or 3528 <= int(digits[:4]) <= 3589
    if first == "6":
        return two in (60, 62, 64, 65)
    return two == 81


def card_groups_ok(groups: tuple[int, ...]) -> bool:
    """Written whole, or in the groups cards print."""
    if len(groups) == 1:
        return True
    if groups in ((4, 6, 5), (4, 6, 4)):  # Amex, Diners
        return True
    last = groups[-1]
    return groups.count(4) >= len(groups) - (last != 4) and 1 <= last <= 4  # 4-4-…-4-(1..4)


def card_ok(digits: str, groups: tuple[int, ...]) -> bool:
    """13-19 digits, written whole or in the groups cards print (4-4-4-4, 4-6-5, 4-6-4),
    an issuer prefix, and the Luhn check."""
    return 13 <= len(digits) <= 19 and card_groups_ok(groups) and card_issuer_ok(digits) and luhn_ok(digits)


# -- 사업자등록번호 -------------------------------------------------------------------------

_BIZ_WEIGHTS = (1, 3, 7, 1, 3, 7, 1, 3, 5)


def business_no_checksum_ok(digits: str) -> bool:
    total = sum(int(d) * w for d, w in zip(digits, _BIZ_WEIGHTS, strict=False))
    total += int(digits[8]) * 5 // 10
    return (10 - total % 10) % 10 == int(digits[9])


def business_no_ok(digits: str, groups: tuple[int, ...], *, keyword_near: bool) -> bool:
    """10 digits with the National Tax Service check digit, written 3-2-5 (or whole right
    after a 사업자 keyword); the tax-office code (first three digits) never starts with 0."""
    if len(digits) != 10 or digits[0] == "0":
        return False
    if groups != (3, 2, 5) and not (groups == (10,) and keyword_near):
        return False
    return business_no_checksum_ok(digits)


# -- phones -----------------------------------------------------------------------------

_AREA_CODES = frozenset({"031", "032", "033", "041", "042", "043", "044", "051", "052", "053", "054", "055",
                         "061", "062", "063", "064"})
_MOBILE = frozenset({"010", "011", "016", "017", "018", "019"})
_REPRESENTATIVE = frozenset({"15", "16", "18"})


def phone_prefix(digits: str) -> str | None:
    """The national prefix (area code, mobile or service code) a number starts with, when
    the rest has a length that prefix allows."""
    if digits.startswith("02"):
        rest = len(digits) - 2
        return "02" if rest in (7, 8) and digits[2] not in "01" else None
    head = digits[:3]
    rest = len(digits) - 3
    if head in _MOBILE:
        return head if rest == 8 or (rest == 7 and head != "010") else None
    if head in _AREA_CODES:
        return head if rest in (7, 8) and digits[3] not in "01" else None
    if head in ("070", "080"):
        return head if rest in (7, 8) else None
    if head == "050" and len(digits) >= 4 and digits[3] in "2345678":
        return digits[:4] if len(digits) - 4 in (7, 8) else None
    if len(digits) == 8 and digits[:2] in _REPRESENTATIVE:
        return digits[:4]
    return None


def phone_ok(digits: str, groups: tuple[int, ...], *, keyword_near: bool) -> bool:
    """A Korean phone number in national form (a +82 prefix already turned into 0).

    Mobile 010 (+8 digits), 011/016-019 (+7 or 8), Seoul 02 and the 0XX area codes (+7 or
    8, the exchange never starting with 0 or 1), 070 internet phones, 080 free numbers,
    050X safe numbers, and the 15XX/16XX/18XX representative numbers. Written whole or in
    the usual groups (prefix-exchange-line or prefix-rest): the last group has four
    digits. Representative numbers (8 digits, easily a price or a count) only as 4-4, or
    whole after a phone keyword.
    """
    prefix = phone_prefix(digits)
    if prefix is None:
        return False
    if digits[0] == "1":  # 15XX/16XX/18XX
        return groups == (4, 4) or (groups == (8,) and keyword_near)
    if len(groups) == 1:
        return True
    if len(groups) == 2:  # prefix-rest, or prefix+exchange-line
        return groups[0] == len(prefix) or groups[1] == 4
    return len(groups) == 3 and groups[0] == len(prefix) and groups[1] in (3, 4) and groups[2] == 4


# -- 운전면허번호 --------------------------------------------------------------------------

# 11 서울 … 26 울산, 28 경기북부 (27 is not issued).
DRIVER_REGION_CODES = frozenset({f"{c}" for c in range(11, 27)} | {"28"})
DRIVER_REGION_NAMES = ("서울", "부산", "경기", "강원", "충북", "충남", "전북", "전남", "경북", "경남", "제주",
                       "대구", "인천", "광주", "대전", "울산", "세종")


def driver_license_ok(digits: str, groups: tuple[int, ...], *, region_name: bool, keyword_near: bool) -> bool:
    """RR-YY-NNNNNN-CC with a licensing region code (11-26, 28), or a region's name
    followed by YY-NNNNNN-CC; a whole 12-digit run only after a 면허 keyword."""
    if region_name:
        return len(digits) == 10 and groups == (2, 6, 2)
    if len(digits) != 12 or digits[:2] not in DRIVER_REGION_CODES:
        return False
    return groups == (2, 2, 6, 2) or (groups == (12,) and keyword_near)


# -- 계좌번호 ------------------------------------------------------------------------------

def account_ok(digits: str, groups: tuple[int, ...]) -> bool:
    """The shape of a Korean bank account number (10-16 digits, written whole or in 2-5
    groups of at least two digits, the last possibly one: 새마을금고 9002-1234-5678-9); the
    caller has already seen a bank keyword next to it. No checksum: banks do not publish
    theirs."""
    return 10 <= len(digits) <= 16 and len(groups) <= 5 and min(groups[:-1], default=2) >= 2
