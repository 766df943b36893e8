"""Finding personal data in a text: one pass of precompiled patterns, then validation.

How a text is read:
  * nothing to do when it has no digit and no '@' (most chat turns with no numbers);
  * every run of digits joined by single separators (``-``, ``.``, a dash, one space) is a
    *chunk*; a hyphen or dot keeps groups in one *token* (``010-1234-5678``), a space
    separates tokens (``4111 1111 1111 1111`` is four). Runs of whole tokens, longest
    first, are offered to the validators in a fixed order (주민등록번호, 운전면허,
    사업자등록번호, card, phone, account), so a group is never split and a value is
    replaced whole;
  * a run glued to a word (``ORD-20241130``, ``0x01012345678``, ``v1.2``, a hash), to a
    currency sign or followed by a unit (``원``, ``개``, ``%``…) is an identifier, code or a
    price, not personal data; so is anything inside a URL, except an email passed as a
    query value (``?email=…``);
  * e-mail addresses are found from each '@' outwards (linear even on hostile input).
Full-width digits (``０１０``) count as digits; hyphen-like dashes count as hyphens.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from domain.pii import validators as v
from domain.pii.kinds import PiiKind

_D = "0-9\uff10-\uff19"
_HYPHENS = "\\-\u2010\u2011\u2012\u2013\u2014\u2212\uff0d"
# Digits with at most one separator between two of them, at least eight digits (the
# shortest value, 1588-1234): shorter numbers (years, counts, prices) never reach Python.
_CHUNK = re.compile(rf"[{_D}](?:[{_HYPHENS}. \t]?[{_D}]){{7,}}")
_GROUP = re.compile(rf"[{_D}]+")
_HAS_TRIGGER = re.compile(rf"[{_D}@]")
_PAREN_PHONE = re.compile(r"\((0[0-9]{1,3})\)[ ]?([0-9]{3,4})[\-. ]([0-9]{4})")
_PASSPORT = re.compile(r"[MSROD][0-9]{3}[0-9A-Z][0-9]{4}")
_URL = re.compile(r"(?:https?|ftp)://[^\s<>\"'`]+|www\.[^\s<>\"'`]+", re.IGNORECASE)
_EMAIL_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*"
    r"\.([A-Za-z]{2,24})(?![A-Za-z0-9\-_@])"
)
_EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
# `icon@2x.png` is an image name, not an address.
_FILE_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "pdf", "js", "ts", "css", "py"})

_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789０１２３４５６７８９")
# A number glued to one of these on its left belongs to a word, code or amount.
_GLUE = _ALNUM | frozenset("_@$₩￦€£¥")
_JOINERS = frozenset("-/#._" + _HYPHENS.replace("\\", ""))
# Units after a number make it a quantity or a price.
_UNITS = ("원", "만", "억", "천", "달러", "엔", "개", "건", "명", "회", "%", "배", "년", "월", "일", "시", "분", "초",
          "점", "위", "kg", "km", "ms", "KB", "MB", "GB")

_RRN_KW = re.compile(r"주민|외국인|등록번호|생년")
_PHONE_KW = re.compile(r"전화|연락|휴대|핸드폰|고객센터|콜센터|대표번호|문의|팩스|☎|tel|phone|fax", re.IGNORECASE)
_BIZ_KW = re.compile(r"사업자|등록번호|business", re.IGNORECASE)
_LICENSE_KW = re.compile(r"면허")
_ACCOUNT_KW = re.compile(
    r"계좌|은행|뱅크|농협|신협|수협|새마을금고|우체국|예금주|신한|국민|KB|NH|IBK|SC제일|account|bank", re.IGNORECASE
)
# A label between the bank keyword and the number says the number is something else.
_ACCOUNT_NOT = re.compile(r"주문|송장|운송장|택배|배송|승인|예약|고객번호|회원번호|영수증|카드|invoice|order|tracking|card",
                          re.IGNORECASE)
_ACCOUNT_AFTER = re.compile(r"[ ]?\(?[ ]?(?:" + _ACCOUNT_KW.pattern + ")", re.IGNORECASE)
_REGION_BEFORE = re.compile("(?:" + "|".join(v.DRIVER_REGION_NAMES) + ")[ ]?$")

_MAX_TOKENS = 6  # 4-4-4-4-3 in spaced groups, +82 and three groups: never more
_MIN_DIGITS = 8  # 1588-1234
_MAX_DIGITS = 19


@dataclass(frozen=True, slots=True)
class PiiFinding:
    """One value found: its kind, its span in the text, and a normalised key (digits,
    lower-cased e-mail) under which the same value written twice is recognised."""

    kind: PiiKind
    start: int
    end: int
    key: str


def _near(pattern: re.Pattern[str], text: str, start: int, width: int) -> bool:
    window = text[max(0, start - width):start]
    cut = window.rfind("\n")
    return pattern.search(window[cut + 1:]) is not None


def _left_ok(text: str, pos: int) -> bool:
    if pos == 0:
        return True
    c = text[pos - 1]
    if c in _GLUE:
        return False
    return not (c in _JOINERS and pos >= 2 and text[pos - 2] in _ALNUM)


def _right_ok(text: str, pos: int) -> bool:
    if pos >= len(text):
        return True
    c = text[pos]
    if c in _GLUE:
        return False
    if c in _JOINERS and pos + 1 < len(text) and text[pos + 1] in _ALNUM:
        return False
    if c == ":" and pos + 1 < len(text) and text[pos + 1] in _ALNUM:
        return False  # a time (2024-11-30 00:00) or host:port
    return not text.startswith(_UNITS, pos)


def _account_context(text: str, start: int, end: int) -> bool:
    window = text[max(0, start - 24):start]
    window = window[window.rfind("\n") + 1:]
    last = None
    for last in _ACCOUNT_KW.finditer(window):  # noqa: B007 - the last keyword is the one that labels
        pass
    if last is not None:
        return _ACCOUNT_NOT.search(window, last.end()) is None
    if _ACCOUNT_AFTER.match(text, end) is not None:
        return _ACCOUNT_NOT.search(window) is None
    return False


def _classify(text: str, digits: str, groups: tuple[int, ...], start: int, end: int
              ) -> tuple[PiiKind, int] | None:
    """The kind of a run of tokens (and where its value starts), or None."""
    n = len(digits)
    if n == 13 and v.rrn_ok(digits, groups, keyword_near=_near(_RRN_KW, text, start, 16)):
        return PiiKind.RRN, start
    if n == 12 and v.driver_license_ok(digits, groups, region_name=False,
                                       keyword_near=_near(_LICENSE_KW, text, start, 16)):
        return PiiKind.DRIVER_LICENSE, start
    if n == 10:
        if groups == (2, 6, 2):
            region = _REGION_BEFORE.search(text, max(0, start - 3), start)
            if region is not None and v.driver_license_ok(digits, groups, region_name=True, keyword_near=False):
                return PiiKind.DRIVER_LICENSE, region.start()
        if v.business_no_ok(digits, groups, keyword_near=_near(_BIZ_KW, text, start, 16)):
            return PiiKind.BUSINESS_NO, start
    if n >= 13 and v.card_ok(digits, groups):
        # A bank keyword labelling the number outranks the card check: one number in ten
        # passes Luhn, and 13-16 digit accounts are common (a card is labelled 카드).
        if n <= 16 and v.account_ok(digits, groups) and _account_context(text, start, end):
            return PiiKind.ACCOUNT, start
        return PiiKind.CARD, start
    if n <= 12 and v.phone_ok(digits, groups, keyword_near=n == 8 and _near(_PHONE_KW, text, start, 16)):
        return PiiKind.PHONE, start
    if 10 <= n <= 16 and v.account_ok(digits, groups) and _account_context(text, start, end):
        return PiiKind.ACCOUNT, start
    return None


def _international(text: str, start: int) -> int | None:
    """Where a '+' (or '+ ') before a run starting with 82 begins, if there is one."""
    if start >= 1 and text[start - 1] == "+":
        return start - 1
    if start >= 2 and text[start - 2:start] == "+ ":
        return start - 2
    return None


def _scan_chunk(text: str, c_start: int, c_end: int, out: list[PiiFinding]) -> None:
    chunk = text[c_start:c_end]
    if " " not in chunk and "\t" not in chunk and not (_left_ok(text, c_start) and _right_ok(text, c_end)):
        return  # one token glued to a word (ORD-20241130-0001, a hash): the common reject, made cheap
    # Tokens: (start, end, digits, group lengths); a space separator starts a new token.
    tokens: list[tuple[int, int, str, tuple[int, ...]]] = []
    t_start = c_start
    t_digits: list[str] = []
    t_groups: list[int] = []
    prev_end = c_start
    for g in _GROUP.finditer(text, c_start, c_end):
        gs, ge = g.span()
        if t_digits and text[prev_end] in " \t":
            tokens.append((t_start, prev_end, "".join(t_digits), tuple(t_groups)))
            t_start, t_digits, t_groups = gs, [], []
        t_digits.append(g.group())
        t_groups.append(ge - gs)
        prev_end = ge
    tokens.append((t_start, prev_end, "".join(t_digits), tuple(t_groups)))

    last = len(tokens)
    i = 0
    while i < last:
        found = False
        for j in range(min(last, i + _MAX_TOKENS), i, -1):
            run = tokens[i:j]
            digits = "".join(t[2] for t in run)
            n = len(digits)
            if n > _MAX_DIGITS + 2:  # +82 adds two
                continue
            if n < _MIN_DIGITS:
                break
            start, end = run[0][0], run[-1][1]
            if (i == 0 and not _left_ok(text, start)) or (j == last and not _right_ok(text, end)):
                continue
            groups = tuple(g for t in run for g in t[3])
            if not digits.isascii():
                digits = digits.translate(_FULLWIDTH)
            intl = _international(text, start) if i == 0 and digits.startswith("82") else None
            if intl is not None:
                national = digits[2:] if digits[2:3] == "0" else "0" + digits[2:]
                rest = groups[1:] if groups[0] == 2 else (groups[0] - 2, *groups[1:])
                if rest and national[0] == "0" and digits[2:3] != "0":
                    rest = (rest[0] + 1, *rest[1:])
                if rest and v.phone_ok(national, rest, keyword_near=False):
                    out.append(PiiFinding(PiiKind.PHONE, intl, end, national))
                    i, found = j, True
                    break
                continue
            if n > _MAX_DIGITS:
                continue
            hit = _classify(text, digits, groups, start, end)
            if hit is not None:
                kind, value_start = hit
                key = digits if value_start == start else text[value_start:start].strip() + digits
                out.append(PiiFinding(kind, value_start, end, key))
                i, found = j, True
                break
        if not found:
            i += 1


def _emails(text: str, urls: list[tuple[int, int]], out: list[PiiFinding]) -> None:
    at = text.find("@")
    while at != -1:
        local_start = at
        floor = max(0, at - 64)
        while local_start > floor and text[local_start - 1] in _EMAIL_LOCAL_CHARS:
            local_start -= 1
        while local_start < at and text[local_start] in "._%+-":
            local_start += 1
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        ok = (
            domain is not None
            and local_start < at
            and text[at - 1] != "."
            and (local_start == 0 or text[local_start - 1] not in _EMAIL_LOCAL_CHARS)
            and domain.group(1).lower() not in _FILE_TLDS
            # git@github.com:org/repo is an SSH remote, not a mailbox
            and not (domain.end() < len(text) and text[domain.end()] == ":" and text[domain.end() + 1:domain.end() + 2].strip())
        )
        if ok and domain is not None:
            inside_url = any(a <= local_start < b for a, b in urls)
            # In a URL only a query value (?email=hong@…) is an address; user:password@host is not.
            if not inside_url or text[local_start - 1] == "=":
                out.append(PiiFinding(PiiKind.EMAIL, local_start, domain.end(), text[local_start:domain.end()].lower()))
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


def find_pii(text: str) -> list[PiiFinding]:
    """Every personal value in ``text``, in order, never overlapping. Pure and
    deterministic; linear in the text's length."""
    if _HAS_TRIGGER.search(text) is None:
        return []
    urls = [m.span() for m in _URL.finditer(text)] if ("://" in text or "www." in text) else []
    found: list[PiiFinding] = []
    if "@" in text:
        _emails(text, urls, found)
    if "(0" in text:
        for m in _PAREN_PHONE.finditer(text):
            digits = m.group(1) + m.group(2) + m.group(3)
            if _right_ok(text, m.end()) and v.phone_ok(digits, (len(m.group(1)), len(m.group(2)), 4), keyword_near=False):
                found.append(PiiFinding(PiiKind.PHONE, m.start(), m.end(), digits))
    for m in _PASSPORT.finditer(text):
        s, e = m.span()
        if _left_ok(text, s) and (e >= len(text) or (text[e] not in _GLUE and not (
                text[e] in _JOINERS and e + 1 < len(text) and text[e + 1] in _ALNUM))):
            found.append(PiiFinding(PiiKind.PASSPORT, s, e, m.group()))
    for m in _CHUNK.finditer(text):
        _scan_chunk(text, m.start(), m.end(), found)
    if not found:
        return found
    found.sort(key=lambda f: (f.start, -f.end))
    kept: list[PiiFinding] = []
    for f in found:
        if kept and f.start < kept[-1].end:
            continue  # an e-mail or a (02) number already holds these characters
        if urls and f.kind is not PiiKind.EMAIL and any(a < f.end and f.start < b for a, b in urls):
            continue
        kept.append(f)
    return kept
