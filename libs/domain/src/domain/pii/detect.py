"""Finding personal data in a text: one scan of precompiled patterns, then validation.

How a text is read:
  * nothing to do when it has no digit and no '@' (most chat turns);
  * one regular-expression scan finds *chunks*: digit groups joined by single separators
    (a hyphen or dash, a dot, or one space before a group of three digits or more), at
    least eight characters and seven digits long, plus the digits of passports
    (``M12345678``, 2021+ ``M123A4567``). A
    hyphen or dot keeps groups in one *token* (``010-1234-5678``); a space separates
    tokens (``4111 1111 1111 1111`` is four). Runs of whole tokens, longest first, are
    offered to the validators in a fixed order (주민등록번호, 운전면허, 사업자등록번호, card,
    phone, account), so a group is never split and a value is replaced whole;
  * a run glued to a word (``ORD-20241130``, ``0x01012345678``, ``v1.2``, a hash), to a
    currency sign, followed by a unit (``원``, ``개``, ``%``…) or a time (``00:00``) is an
    identifier, code, price or date, not personal data; so is any number inside a URL (an
    e-mail inside one only as a query value, ``?email=…``);
  * e-mail addresses are found from each '@' outwards (linear even on hostile input);
    ``(02) 312-4567``: the area code before a chunk, closed by a parenthesis.
Full-width digits (``０１０``) count as digits and hyphen-like dashes as hyphens: a text
that has any is first rewritten with their ASCII forms, one character for one, so spans
found stand in the caller's text and every pattern can stay ASCII (cheaper to scan).
"""
from __future__ import annotations

import re
from bisect import bisect_right
from itertools import chain
from typing import NamedTuple

from domain.pii import validators as v
from domain.pii.kinds import PiiKind

_D = "0-9"
_HYPHENS = "\\-"
# What ``_narrowed`` rewrites before the scan: full-width digits, dashes that mean a hyphen.
_WIDE = tuple(zip("０１２３４５６７８９", "0123456789", strict=True)) + tuple(
    (dash, "-") for dash in "\u2010\u2011\u2012\u2013\u2014\u2212\uff0d")
# The one scan of the text. At each digit that starts a number: either the rest of a
# passport number glued to its letter (M12345678, M123A4567), or a chunk: digit groups
# joined by single separators (a hyphen or dot joins any group; a space only a group of
# three digits or more, so "2024.11.29 14:32" stops before the hour, except after +82:
# "+82 2 312 4567"), starting where at least eight digit-or-separator characters and seven
# digits follow (the shortest values: 1588-1234, and 312-4567 after "(02) "). Numbers glued to a word (ORD-2024…, 0x…, a hash) and
# lone dates (2024-11-30, 20241130) are refused inside the scan, so they never cost a
# Python call. Possessive quantifiers: a failing run is never re-tried digit by digit.
_SEP = _HYPHENS + ". \t"
_END = rf"(?![0-9]|[{_HYPHENS}.][0-9]|[ \t][0-9]{{3}})"  # nothing more of the chunk follows
_CHUNK = re.compile(
    # A match starts only where a digit run starts (every branch below refuses a digit after
    # a digit): saying so first costs a digit inside a run one two-character look-behind,
    # not the look-ahead and three look-behinds of the branches (digit-dense text has four
    # times more digits than runs).
    rf"[{_D}](?<![{_D}][{_D}])(?:"
    # a passport's digits after its letter (the chunk below refuses a number glued to a letter)
    r"(?<=[MSROD][0-9])(?:(?P<passport>[0-9]{7})|(?P<passport_2021>[0-9]{2}[A-Z][0-9]{4}))"
    rf"|(?=[{_D}{_SEP}]{{7}})"  # most numbers (years, prices, counts) stop here
    rf"(?<![A-Za-z0-9_@$₩￦][{_D}])(?<![A-Za-z0-9][{_HYPHENS}/#_][{_D}])"
    # at least seven digits with single separators (the fewest any value has: 312-4567 after
    # "(02) "), so a version (0.115.12) or a date and time (11.29 14:32) is no Python call;
    # written out six times: a counted group costs the engine more than the repetition
    r"(?=" + rf"[{_SEP}]?[{_D}]" * 6 + ")"
    rf"(?!(?<=[12])[0-9]{{3}}[{_HYPHENS}./][01]?[0-9][{_HYPHENS}./][0-3]?[0-9]{_END})"
    rf"(?!(?:(?<=1)9|(?<=2)0)[0-9]{{2}}[01][0-9][0-3][0-9]{_END})"
    rf"[{_D}]*+(?:(?:[{_HYPHENS}.]|[ \t](?=[{_D}]{{3}})|(?<=\+82)[ \t])[{_D}]++)*+)"
)
_GROUP = re.compile(rf"[{_D}]+")
# (02) 2345-6789 and 02)2345-6789: an area code closed by a parenthesis, before a chunk.
_AREA_BEFORE = re.compile(r"\(?(0[0-9]{1,3})\)[ ]?$")
# Tel.02-…, H.P.010-…, No.…: a label's dot, not a decimal point or a version.
_LABEL_DOT = re.compile(r"(?:tel|fax|hp|h\.p|mobile|mob|phone|ph|no)\.$", re.IGNORECASE)
_CORPORATE_KW = re.compile(r"법인")
_URL_REST = re.compile(r"[^\s<>\"'`]+")
_EMAIL_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*"
    r"\.([A-Za-z]{2,24})(?![A-Za-z0-9\-_@])"
)
_EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL_LOCAL_RUN = re.compile(r"[A-Za-z0-9._%+\-]*")  # always matches (possibly empty)
# `icon@2x.png` is an image name, not an address.
_FILE_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "pdf", "js", "ts", "css", "py"})

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# A number glued to one of these on its left belongs to a word, code or amount.
_GLUE = _ALNUM | frozenset("_@$₩￦€£¥")
_JOINERS = frozenset("-/#._")
# Units after a number make it a quantity or a price.
_UNITS = ("원", "만", "억", "천", "달러", "엔", "개", "건", "명", "회", "%", "배", "년", "월", "일", "시", "분", "초",
          "점", "위", "kg", "km", "ms", "KB", "MB", "GB")

_RRN_KW = re.compile(r"주민|외국인|등록번호|생년")
_PHONE_KW = re.compile(r"전화|연락|휴대|핸드폰|고객센터|콜센터|대표번호|문의|팩스|☎|tel|phone|fax", re.IGNORECASE)
_BIZ_KW = re.compile(r"사업자|등록번호|business", re.IGNORECASE)
_LICENSE_KW = re.compile(r"면허")
_BANK_WORDS = ("계좌", "은행", "뱅크", "농협", "신협", "수협", "새마을금고", "우체국", "예금주", "신한", "국민", "KB", "NH",
               "IBK", "SC제일", "account", "Account", "ACCOUNT", "bank", "Bank", "BANK")


def _first_char_pattern(words: tuple[str, ...]) -> str:
    """An alternation that starts with a character class of the words' first letters, so
    `re` skips ahead to a possible start instead of trying every branch at every position
    (several times faster on the short windows searched per number; IGNORECASE would
    undo it, so case variants are spelled out)."""
    firsts = "".join(sorted({w[0] for w in words}))
    return f"[{firsts}](?:" + "|".join(f"(?<={re.escape(w[0])}){re.escape(w[1:])}" for w in words) + ")"


_ACCOUNT_KW = re.compile(_first_char_pattern(_BANK_WORDS))
# A label between the bank keyword and the number says the number is something else.
_ACCOUNT_NOT = re.compile(r"주문|송장|운송장|택배|배송|승인|예약|고객번호|회원번호|영수증|카드|invoice|order|tracking|card",
                          re.IGNORECASE)
# 110-123-456789 (신한은행): a bank named in parentheses right after the number.
_ACCOUNT_AFTER = re.compile(r"[ ]?\([ ]?(?:" + "|".join(map(re.escape, _BANK_WORDS)) + ")")
_REGION_BEFORE = re.compile("(?:" + "|".join(v.DRIVER_REGION_NAMES) + ")[ ]?$")

_MAX_TOKENS = 6  # 4-4-4-4-3 in spaced groups, +82 and three groups: never more
_MIN_DIGITS = 8  # 1588-1234
_MAX_DIGITS = 19


class PiiFinding(NamedTuple):
    """One value found: its kind, its span in the text, and a normalised key (digits,
    lower-cased e-mail) under which the same value written twice is recognised. A named
    tuple: made for every value found, it costs a quarter of a frozen dataclass."""

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
    if c in _JOINERS and pos >= 2 and text[pos - 2] in _ALNUM:
        return c == "." and _LABEL_DOT.search(text, max(0, pos - 8), pos) is not None
    return True


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


def _account_context(text: str, start: int, end: int, *, after: bool = True) -> bool:
    """A bank/계좌 keyword labels the number: the last one within 24 characters before it on
    its line with no other label (주문, 송장, 카드...) in between, or (when ``after``) a bank
    named in parentheses right after it."""
    window = text[max(0, start - 24):start]
    window = window[window.rfind("\n") + 1:]
    last = None
    for last in _ACCOUNT_KW.finditer(window):  # noqa: B007 - the last keyword is the one that labels
        pass
    if last is not None:
        return _ACCOUNT_NOT.search(window, last.end()) is None
    if after and _ACCOUNT_AFTER.match(text, end) is not None:
        return _ACCOUNT_NOT.search(window) is None
    return False


class _Chunk:
    """One chunk being read; whether a bank keyword stands near it is looked up once, and
    only when a run has an account's length."""

    __slots__ = ("_bank", "end", "start", "text")

    def __init__(self, text: str, start: int, end: int) -> None:
        self.text, self.start, self.end = text, start, end
        self._bank: bool | None = None

    def bank_near(self) -> bool:
        if self._bank is None:
            self._bank = (_ACCOUNT_KW.search(self.text, max(0, self.start - 24), self.start) is not None
                          or _ACCOUNT_AFTER.match(self.text, self.end) is not None)
        return self._bank


def _classify(text: str, digits: str, groups: tuple[int, ...], start: int, end: int, chunk: _Chunk
              ) -> tuple[PiiKind, int] | None:
    """The kind of a run of tokens (and where its value starts), or None. Shapes are
    checked before any keyword window is read."""
    n = len(digits)
    if n == 13 and groups in ((13,), (6, 7)) and v.rrn_ok(
            digits, groups, keyword_near=groups == (13,) and _near(_RRN_KW, text, start, 16)):
        # 법인등록번호 (a company's registration number) has the same shape
        return None if _near(_CORPORATE_KW, text, start, 16) else (PiiKind.RRN, start)
    if n == 12 and groups in ((2, 2, 6, 2), (12,)) and v.driver_license_ok(
            digits, groups, region_name=False, keyword_near=groups == (12,) and _near(_LICENSE_KW, text, start, 16)):
        return PiiKind.DRIVER_LICENSE, start
    if n == 10:
        if groups == (2, 6, 2):
            region = _REGION_BEFORE.search(text, max(0, start - 3), start)
            if region is not None and v.driver_license_ok(digits, groups, region_name=True, keyword_near=False):
                return PiiKind.DRIVER_LICENSE, region.start()
        if groups in ((3, 2, 5), (10,)) and v.business_no_ok(
                digits, groups, keyword_near=groups == (10,) and _near(_BIZ_KW, text, start, 16)):
            return PiiKind.BUSINESS_NO, start
    if n >= 13 and v.card_ok(digits, groups):
        # A bank keyword labelling the number outranks the card check: one number in ten
        # passes Luhn, and 13-16 digit accounts are common (a card is labelled 카드).
        if n <= 16 and v.account_ok(digits, groups) and chunk.bank_near() and _account_context(
                text, start, end, after=False):
            return PiiKind.ACCOUNT, start
        return PiiKind.CARD, start
    if n <= 12 and v.phone_ok(digits, groups, keyword_near=groups == (8,) and _near(_PHONE_KW, text, start, 16)):
        return PiiKind.PHONE, start
    if 10 <= n <= 16 and v.account_ok(digits, groups) and chunk.bank_near() and _account_context(text, start, end):
        return PiiKind.ACCOUNT, start
    return None


def _international(text: str, start: int) -> int | None:
    """Where a '+' (or '+ ') before a run starting with 82 begins, if there is one."""
    if start >= 1 and text[start - 1] == "+":
        return start - 1
    if start >= 2 and text[start - 2:start] == "+ ":
        return start - 2
    return None


_REPRESENTATIVE = frozenset({"15", "16", "18"})
_TEN_SHAPES = frozenset({(3, 2, 5), (10,), (2, 6, 2)})
_TWELVE_SHAPES = frozenset({(2, 2, 6, 2), (12,)})
_RRN_SHAPES = frozenset({(13,), (6, 7)})


def _worth(digits: str, groups: tuple[int, ...], n: int, chunk: _Chunk) -> bool:
    """A cheap gate before classification: could any kind have these digits at all? (Most
    runs of a chunk are dates, tracking or order numbers that no kind can take.)"""
    return ((digits[0] == "0" and n <= 12) or digits.startswith("82")
            or (n == 13 and groups in _RRN_SHAPES) or (n >= 13 and v.card_groups_ok(groups))
            or (n == 8 and digits[:2] in _REPRESENTATIVE)
            or (n == 10 and groups in _TEN_SHAPES) or (n == 12 and groups in _TWELVE_SHAPES)
            or (n >= 10 and chunk.bank_near()))


# Whether a token of a spaced chunk could start a value of any kind but an account: a
# superset of ``_may_start`` over every length, read off the chunk in one search (a token
# starting with 0, 82 or 15/16/18, a first group of 2, 3, 6 or 8+ digits, or 13 digits in
# all for a card), so a chunk nothing could start costs no tokenizing.
_MAY_START_ANY = re.compile(r"(?:^|[ \t])(?:(?:[0-9]{2,3}|[0-9]{6})(?![0-9])|[0-9]{8}|0|82|1[568])"
                            r"|^(?:[^0-9]*[0-9]){13}")


def _may_start(first: str, g0: int, n: int) -> bool:
    """Whether a run of ``n`` digits whose first token is ``first`` (first group ``g0``
    long) could be anything but an account, from the first group of every other kind's
    written shape: a phone's prefix (02, 0XX, 050X, +82, 15XX-XXXX), a card's four digits
    from an issuer, 주민등록번호 6-7, licence 2-2-6-2, 사업자 3-2-5, or a number written
    whole. Long space-separated runs of numbers then cost no string building."""
    c = first[0]
    if g0 >= 8:
        return True
    if c == "0":
        return g0 in (2, 3) or (g0 == 4 and first.startswith("050")) or (g0 == 6 and n == 13)
    if g0 == 4:
        return (n >= 13 and (c in "234569" or first.startswith("81"))) or (n == 8 and first[:2] in _REPRESENTATIVE)
    if g0 == 2:
        return first == "82" or n in (10, 12)
    return (g0 == 6 and n == 13) or (g0 == 3 and n == 10)


def _offer(text: str, digits: str, groups: tuple[int, ...], start: int, end: int, first: bool, chunk: _Chunk,
           out: list[PiiFinding]) -> bool:
    """Classify one run of whole tokens (ASCII digits); record it and return True when it
    is a value."""
    if first and digits.startswith("82"):
        intl = _international(text, start)
        if intl is not None:  # +82 10-1234-5678: only a phone is written this way
            written_zero = digits[2:3] == "0"
            national = digits[2:] if written_zero else "0" + digits[2:]
            rest = groups[1:] if groups[0] == 2 else (groups[0] - 2, *groups[1:])
            if rest and not written_zero:
                rest = (rest[0] + 1, *rest[1:])
            if rest and v.phone_ok(national, rest, keyword_near=False):
                out.append(PiiFinding(PiiKind.PHONE, intl, end, national))
                return True
            return False
    if len(digits) > _MAX_DIGITS:
        return False
    hit = _classify(text, digits, groups, start, end, chunk)
    if hit is None:
        return False
    kind, value_start = hit
    key = digits if value_start == start else text[value_start:start].strip() + digits
    out.append(PiiFinding(kind, value_start, end, key))
    return True


def _passport_at(text: str, letter: int, end: int) -> bool:
    """Whether a passport number spanning [letter, end) stands alone (not part of a word,
    a model code or a longer identifier)."""
    if not _left_ok(text, letter):
        return False
    if end >= len(text):
        return True
    c = text[end]
    return c not in _GLUE and not (c in _JOINERS and end + 1 < len(text) and text[end + 1] in _ALNUM)


def _scan_chunk(text: str, c_start: int, c_end: int, out: list[PiiFinding]) -> None:
    chunk = text[c_start:c_end]
    if " " not in chunk and "\t" not in chunk:
        # One token: the common case (a date, an order number, a phone), kept cheap.
        if not (_left_ok(text, c_start) and _right_ok(text, c_end)):
            return
        parts = (chunk,) if chunk.isdigit() else _GROUP.findall(chunk)
        digits = "".join(parts) if len(parts) > 1 else chunk
        groups = tuple(map(len, parts))
        n = len(digits)
        if c_start > 2 and (text[c_start - 1] == ")" or text[c_start - 2:c_start] == ") ") and len(groups) == 2:
            area = _AREA_BEFORE.search(text, max(0, c_start - 7), c_start)
            if area is not None and _left_ok(text, area.start()):
                national = area.group(1) + digits
                if v.phone_ok(national, (len(area.group(1)), *groups), keyword_near=False):
                    out.append(PiiFinding(PiiKind.PHONE, area.start(), c_end, national))
                return
        ctx = _Chunk(text, c_start, c_end)
        if _MIN_DIGITS <= n <= _MAX_DIGITS + 2 and _worth(digits, groups, n, ctx):
            _offer(text, digits, groups, c_start, c_end, True, ctx, out)
        return
    # Tokens: one space or tab separates two tokens (never two in a row, never at an end);
    # a token keeps its groups together.
    if _MAY_START_ANY.search(chunk) is None and (
            len(chunk) - chunk.count("-") - chunk.count(".") - chunk.count(" ") - chunk.count("\t") < 10
            or not _Chunk(text, c_start, c_end).bank_near()):
        return  # spaced groups (a tracking number) no kind but an account can start, and no bank named
    words = chunk.split()
    last = len(words)
    starts: list[int] = []
    tok_digits: list[str] = []
    tok_groups: list[tuple[int, ...]] = []
    cum = [0]  # digits before each token: a run's length without building it
    pos = c_start
    for word in words:
        starts.append(pos)
        pos += len(word) + 1
        if word.isdigit():
            tok_digits.append(word)
            tok_groups.append((len(word),))
            cum.append(cum[-1] + len(word))
        else:
            parts = _GROUP.findall(word)
            digits = "".join(parts)
            tok_digits.append(digits)
            tok_groups.append(tuple(map(len, parts)))
            cum.append(cum[-1] + len(digits))
    ctx = _Chunk(text, c_start, c_end)
    i = 0
    while i < last:
        found = False
        first, g0, before = tok_digits[i], tok_groups[i][0], cum[i]
        for j in range(min(last, i + _MAX_TOKENS), i, -1):
            n = cum[j] - before
            if n > _MAX_DIGITS + 2:  # +82 adds two
                continue
            if n < _MIN_DIGITS:
                break
            if not _may_start(first, g0, n) and (n < 10 or not ctx.bank_near()):
                continue  # nothing but an account could start here, and that needs a bank keyword
            start, end = starts[i], starts[j - 1] + len(words[j - 1])
            if (i == 0 and not _left_ok(text, start)) or (j == last and not _right_ok(text, end)):
                continue
            digits = "".join(tok_digits[i:j])
            groups = tuple(chain.from_iterable(tok_groups[i:j]))
            if _worth(digits, groups, n, ctx) and _offer(text, digits, groups, start, end, i == 0, ctx, out):
                i, found = j, True
                break
        if not found:
            i += 1


def _emails(text: str, urls: list[tuple[int, int]], url_starts: list[int], out: list[PiiFinding]) -> None:
    at = text.find("@")
    while at != -1:
        if at == 0 or text[at - 1] not in _EMAIL_LOCAL_CHARS:
            at = text.find("@", at + 1)
            continue
        # the local part: up to 64 address characters back from the '@' (read off the
        # reversed window in one match, not character by character)
        run = _EMAIL_LOCAL_RUN.match(text[max(0, at - 64):at][::-1])
        local_start = at - (run.end() if run is not None else 0)
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
            inside_url = bool(urls) and _inside(urls, url_starts, local_start, local_start + 1)
            # In a URL only a query value (?email=hong@…) is an address; user:password@host is not.
            if not inside_url or text[local_start - 1] == "=":
                out.append(PiiFinding(PiiKind.EMAIL, local_start, domain.end(), text[local_start:domain.end()].lower()))
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


_SCHEMES = {"https": 5, "http": 4, "ftp": 3}


def _urls(text: str) -> list[tuple[int, int]]:
    """Spans of http(s)/ftp URLs and www. addresses, found from their literal markers (a
    case-insensitive alternation scanned over the whole text costs more than the rest);
    sorted and disjoint."""
    spans: list[tuple[int, int]] = []
    at = text.find("://")
    while at != -1:
        head = text[max(0, at - 5):at].lower()
        back = _SCHEMES.get(head) or _SCHEMES.get(head[1:]) or _SCHEMES.get(head[2:]) or 0
        start = at - back
        if back and (start == 0 or not text[start - 1].isalnum()):
            rest = _URL_REST.match(text, start)
            if rest is not None:
                spans.append(rest.span())
                at = text.find("://", max(rest.end(), at + 3))
                continue
        at = text.find("://", at + 3)
    schemed = len(spans)  # in order and apart: each search went on after the URL found
    at = text.find("www.")
    while at != -1:
        if at == 0 or not text[at - 1].isalnum():
            rest = _URL_REST.match(text, at)
            if rest is not None:
                spans.append(rest.span())
        at = text.find("www.", at + 4)
    return spans if len(spans) == schemed else _merged(spans)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _inside(spans: list[tuple[int, int]], starts: list[int], start: int, end: int) -> bool:
    """Whether [start, end) overlaps one of the sorted, disjoint ``spans``."""
    i = bisect_right(starts, end - 1) - 1
    return i >= 0 and spans[i][1] > start


def _narrowed(text: str) -> str:
    """``text`` with full-width digits and hyphen-like dashes in their ASCII forms (one
    character for one: every span stays where it was). Looked for one by one: each ``in``
    runs at memory speed, a character class would cost a regular-expression scan."""
    if text.isascii():
        return text
    for wide, narrow in _WIDE:
        if wide in text:
            text = text.replace(wide, narrow)
    return text


# The pre-filter's digit test: one scan in C. (Ten ``in`` tests from a generator cost a
# Python frame switch each: ~0.8 µs per text against ~0.2 µs, and a replayed conversation
# sends every stored turn's two texts through here on every request.)
_ANY_DIGIT = re.compile("[0-9]")


def _has_digit(text: str) -> bool:
    return _ANY_DIGIT.search(text) is not None


def find_pii(text: str) -> list[PiiFinding]:
    """Every personal value in ``text``, in order, never overlapping. Pure and
    deterministic; linear in the text's length."""
    text = _narrowed(text)
    has_at = "@" in text
    has_digit = _has_digit(text)
    if not has_digit and not has_at:
        return []  # the pre-filter: every value but an e-mail has digits
    urls = _urls(text)
    url_starts = [a for a, _ in urls]
    found: list[PiiFinding] = []
    if has_at:
        _emails(text, urls, url_starts, found)
    if has_digit:
        for m in _CHUNK.finditer(text):
            s, e = m.span()
            kind = m.lastgroup
            if e - s < _MIN_DIGITS and kind is None:
                continue  # "1 2 3": the look-ahead saw eight characters, the chunk has fewer
            if urls and _inside(urls, url_starts, s, e):
                continue  # numbers in a URL are paths and parameters
            if kind is not None:  # passport or passport_2021
                if _passport_at(text, s - 1, e):
                    found.append(PiiFinding(PiiKind.PASSPORT, s - 1, e, text[s - 1:e]))
                continue
            _scan_chunk(text, s, e, found)
    if len(found) < 2:
        return [f for f in found if f.kind is PiiKind.EMAIL or not (urls and _inside(urls, url_starts, f.start, f.end))]
    found.sort(key=lambda f: (f.start, -f.end))
    kept: list[PiiFinding] = []
    for f in found:
        if kept and f.start < kept[-1].end:
            continue  # an e-mail or a (02) number already holds these characters
        if urls and f.kind is not PiiKind.EMAIL and _inside(urls, url_starts, f.start, f.end):
            continue
        kept.append(f)
    return kept
