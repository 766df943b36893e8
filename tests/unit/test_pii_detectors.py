"""Each PII detector: what it takes, what it refuses, and hostile input.

Valid numbers are computed here with their own checksum code (not the detector's)."""
from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.pii import PiiGuard, PiiKind, find_pii
from domain.pii import validators as v


def kinds(text: str) -> list[tuple[str, str]]:
    return [(f.kind.value, text[f.start:f.end]) for f in find_pii(text)]


def rrn_with_check(first12: str) -> str:
    weights = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]
    s = sum(int(c) * w for c, w in zip(first12, weights))
    base = 13 if first12[6] in "5678" else 11
    return first12 + str((base - s % 11) % 10)


def luhn(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def biz(first9: str) -> str:
    w = [1, 3, 7, 1, 3, 7, 1, 3, 5]
    s = sum(int(c) * x for c, x in zip(first9, w)) + int(first9[8]) * 5 // 10
    return first9 + str((10 - s % 10) % 10)


RRN = rrn_with_check("900101123456")  # legacy, check digit valid
RRN_BAD_CHECK = RRN[:-1] + str((int(RRN[-1]) + 1) % 10)
FOREIGN = rrn_with_check("850315512345")
VISA = luhn("411111111111111")
AMEX = luhn("37828224631000")
BIZ = biz("123456789")


# -- 주민등록번호 ------------------------------------------------------------------------------

def test_rrn_legacy_with_check_digit_in_every_shape():
    assert kinds(f"주민번호 {RRN[:6]}-{RRN[6:]} 입니다") == [("rrn", f"{RRN[:6]}-{RRN[6:]}")]
    assert kinds(f"번호 {RRN[:6]} {RRN[6:]}") == [("rrn", f"{RRN[:6]} {RRN[6:]}")]
    assert kinds(f"값: {RRN}") == [("rrn", RRN)]  # whole, no keyword: the check digit decides
    assert kinds(f"외국인등록번호 {FOREIGN[:6]}-{FOREIGN[6:]}") == [("rrn", f"{FOREIGN[:6]}-{FOREIGN[6:]}")]


def test_rrn_since_october_2020_has_no_check_digit_and_is_taken_by_shape_or_keyword():
    new = "2103154" + "829301"  # born 2021-03-15, random tail
    assert not v.rrn_legacy_checksum_ok(new)
    assert kinds(f"아이 {new[:6]}-{new[6:]}") == [("rrn", f"{new[:6]}-{new[6:]}")]
    assert kinds(f"주민등록번호 {new}") == [("rrn", new)]
    # whole, wrong check digit, no keyword: an order or invoice number, not taken
    assert kinds(f"주문 {RRN_BAD_CHECK}") == []


def test_rrn_refused_without_a_real_birth_date_or_century_digit():
    assert kinds("코드 901301-1234567") == []  # month 13
    assert kinds("코드 900230-1234567") == []  # 30 February
    assert kinds("코드 990101-3234567") == []  # born 2099: in the future
    ninety = rrn_with_check("900101912345")
    assert v.rrn_ok(ninety, (6, 7), keyword_near=False)  # 1890, check digit valid
    wrong = ninety[:-1] + str((int(ninety[-1]) + 1) % 10)
    assert not v.rrn_ok(wrong, (6, 7), keyword_near=True)  # 9/0 only with the check digit
    assert v.rrn_birth_date("9001011234567") == date(1990, 1, 1)
    assert v.rrn_birth_date("0501013234567") == date(2005, 1, 1)


def test_a_corporate_registration_number_of_the_same_shape_is_not_taken():
    assert kinds("법인등록번호 110111-1234567") == []
    assert kinds(f"대표자 주민번호 {RRN[:6]}-{RRN[6:]}") == [("rrn", f"{RRN[:6]}-{RRN[6:]}")]


def test_rrn_glued_to_a_word_or_inside_a_longer_run_is_not_taken():
    assert kinds(f"ID{RRN}") == []
    assert kinds(f"ORD-{RRN[:6]}-{RRN[6:]}") == []
    assert kinds(f"{RRN}9") == []
    assert kinds(f"9{RRN[:6]}-{RRN[6:]}") == []


# -- phones -------------------------------------------------------------------------------

@pytest.mark.parametrize("number", [
    "010-1234-5678", "010 1234 5678", "010.1234.5678", "01012345678", "010.1234-5678",
    "011-234-5678", "016-2345-6789", "019-345-6789", "02-312-4567", "02-2345-6789", "031-234-5678",
    "064-7123-4567", "070-1234-5678", "0505-123-4567", "0504-1234-5678", "080-123-4567", "1588-1234",
    "1644-5678", "1899-0000", "+82 10-1234-5678", "+82-10-1234-5678", "+821012345678", "+82 2-312-4567",
    "(02) 312-4567", "(031)234-5678", "02)2345-6789", "010–1234–5678", "０１０－１２３４－５６７８",
])
def test_phone_shapes(number):
    assert kinds(f"연락처 {number} 로 연락 주세요") == [("phone", number)]


@pytest.mark.parametrize("text,value", [
    ("Tel.02-2345-6789", "02-2345-6789"), ("H.P.010-2345-6789", "010-2345-6789"),
    ("FAX.031-234-5678", "031-234-5678"), ("TEL) 02-2345-6789", "02-2345-6789"),
])
def test_phone_after_a_label_and_its_dot(text, value):
    assert kinds(text) == [("phone", value)]


@pytest.mark.parametrize("text", [
    "010-123-4567",  # 010 always has a four-digit exchange
    "02-123-456",  # line number of three digits
    "02-0123-4567", "031-123-4567",  # exchanges never start with 0 or 1
    "099-1234-5678", "013-1234-5678",  # no such prefix
    "15881234원", "가격 16000000원", "재고 1588 1234개",  # quantities and prices
    "주문 번호 15881234",  # a representative number written whole needs a phone keyword
    "010-1234-5678-9012",  # one token longer than any phone
    "https://example.com/u/01012345678", "http://a.kr/?tel=010-1234-5678",
    "user_01012345678", "0x01012345678", "abc01012345678", "01012345678@", "v010.1234.5678",
])
def test_phone_near_misses(text):
    assert [k for k in kinds(text) if k[0] == "phone"] == []


def test_a_representative_number_written_whole_after_a_phone_keyword():
    assert kinds("고객센터 15881234") == [("phone", "15881234")]


def test_full_width_and_ascii_forms_share_one_key():
    a, b, c = find_pii("０１０－１２３４－５６７８ 그리고 010-1234-5678 그리고 +82 10 1234 5678")
    assert a.key == b.key == c.key == "01012345678"


@pytest.mark.parametrize(("text", "found"), [
    # full-width digits and Unicode dashes read as ASCII wherever they stand, spans unchanged
    ("여권 M１２３４５６７８ 입니다", [("passport", "M１２３４５６７８")]),
    ("주민번호 ９００１０１‐１２３４５６８", [("rrn", "９００１０１‐１２３４５６８")]),
    ("메일 minji.seo０26@daum.net 로", [("email", "minji.seo０26@daum.net")]),  # whole, not "26@daum.net"
    ("메일 park-supp–ort1@daum.net 로", [("email", "park-supp–ort1@daum.net")]),
    ("２０２４－１１－３０ 결제 ３９,８００원", []),  # a date and a price stay what they are
])
def test_full_width_digits_and_dashes_anywhere(text, found):
    assert kinds(text) == found


# -- cards --------------------------------------------------------------------------------

@pytest.mark.parametrize("number", [
    VISA, "4111-1111-1111-1111", "4111 1111 1111 1111", "5555 5555 5555 4444", "2223-0000-4841-0010",
    "3782-822463-10005", "3530 1113 3330 0000", luhn("941012345678901"), luhn("621234567890123"),
    luhn("411111111111"),  # 13 digits (old Visa)
    luhn("411111111111111111"),  # 19 digits
    "４１１１－１１１１－１１１１－１１１１",
])
def test_card_shapes(number):
    assert kinds(f"카드 {number} 결제") == [("card", number)]


@pytest.mark.parametrize("number", [
    "4111-1111-1111-1112",  # Luhn fails
    "1234-5678-9012-3452",  # Luhn holds, no issuer starts with 1
    luhn("701234567890123"),  # nor with 7
    "41111-1111-1111-111",  # not the groups a card prints
    luhn("41111111111"),  # 12 digits
    luhn("41111111111111111111"),  # 21 digits
])
def test_card_near_misses(number):
    assert [k for k in kinds(f"번호 {number}") if k[0] == "card"] == []


# -- 사업자등록번호 -----------------------------------------------------------------------------

def test_business_number_with_its_check_digit():
    assert kinds(f"사업자 {BIZ[:3]}-{BIZ[3:5]}-{BIZ[5:]}") == [("business_no", f"{BIZ[:3]}-{BIZ[3:5]}-{BIZ[5:]}")]
    assert kinds(f"사업자등록번호 {BIZ}") == [("business_no", BIZ)]
    assert kinds(f"회원 {BIZ}") == []  # whole, no keyword: too common a shape
    wrong = BIZ[:-1] + str((int(BIZ[-1]) + 1) % 10)
    assert kinds(f"사업자 {wrong[:3]}-{wrong[3:5]}-{wrong[5:]}") == []
    assert v.business_no_checksum_ok("2208162517")


# -- passports, driver's licences --------------------------------------------------------

@pytest.mark.parametrize("text,found", [
    ("여권 M12345678 입니다", [("passport", "M12345678")]),
    ("passport: S98765432.", [("passport", "S98765432")]),
    ("여권번호 M123A4567", [("passport", "M123A4567")]),
    ("D00012345", [("passport", "D00012345")]),
    ("M1234567", []), ("M123456789", []), ("m12345678", []), ("AM12345678", []), ("X12345678", []),
    ("M12345678-01", []), ("SM12345678", []), ("SKU-S12345678", []),
    ("주문 M12345678 2024-11-30 010-2345-6789", [("passport", "M12345678"), ("phone", "010-2345-6789")]),
])
def test_passport_shapes(text, found):
    assert kinds(text) == found


@pytest.mark.parametrize("text,found", [
    ("면허 11-12-345678-90", [("driver_license", "11-12-345678-90")]),
    ("28-05-123456-01 확인", [("driver_license", "28-05-123456-01")]),
    ("면허번호 서울 12-345678-90", [("driver_license", "서울 12-345678-90")]),
    ("면허 부산12-345678-90", [("driver_license", "부산12-345678-90")]),
    ("운전면허 111234567890", [("driver_license", "111234567890")]),
    ("27-12-345678-90", []), ("10-12-345678-90", []), ("111234567890", []),
])
def test_driver_license_shapes(text, found):
    assert kinds(text) == found


# -- accounts -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("국민은행 123456-01-234567", "123456-01-234567"),
    ("신한 110-123-456789 로 입금", "110-123-456789"),
    ("계좌번호: 1002123456789", "1002123456789"),
    ("환불 계좌 카카오뱅크 3333-01-1234567", "3333-01-1234567"),
    ("새마을금고 9002-1234-5678-9", "9002-1234-5678-9"),
    ("123-456789-01-234 (IBK기업은행)", "123-456789-01-234"),
    ("계좌 4111111111111111", "4111111111111111"),  # labelled an account: the label wins over Luhn
])
def test_account_needs_a_bank_keyword(text, value):
    assert kinds(text) == [("account", value)]


@pytest.mark.parametrize("text", [
    "회원번호 110-123-456789",  # no bank keyword
    "계좌이체로 결제했고 주문번호 202411301234 입니다",  # a label between keyword and number
    "우체국택배 송장 6012-3456-7890",
    "계좌로 1500000원 입금했습니다",
    "은행 점검 2024-11-30 00:00~06:00",
    "계좌\n\n\n주문 110-123-456789",  # the keyword is on another line
])
def test_account_near_misses(text):
    assert [k for k in kinds(text) if k[0] == "account"] == []


def test_a_card_labelled_as_a_card_at_a_bank_stays_a_card():
    assert kinds("신한카드 4111-1111-1111-1111") == [("card", "4111-1111-1111-1111")]
    # a bank named after a card number (the next item) does not make the card an account
    assert kinds("카드 4111-1111-1111-1111 국민은행 123456-01-234567") == [
        ("card", "4111-1111-1111-1111"), ("account", "123456-01-234567")]


# -- e-mail -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,found", [
    ("메일 hong.gildong@naver.com 로", [("email", "hong.gildong@naver.com")]),
    ("Hong+Tag@Company.Co.Kr.", [("email", "Hong+Tag@Company.Co.Kr")]),
    ("이메일:kim_01@daum.net입니다", [("email", "kim_01@daum.net")]),
    ("https://x.com/unsub?email=a.b@c.kr", [("email", "a.b@c.kr")]),
    ("https://user:pw@host.example.com/", []),
    ("git@github.com:org/repo.git", []), ("icon@2x.png", []), ("@kim_minsu 님", []),
    ("user@localhost", []), ("a@b", []), ("@app.get('/')", []), ("npm i @types/node@20.1.0", []),
])
def test_email_shapes(text, found):
    assert kinds(text) == found


# -- dates, prices, order numbers, code ------------------------------------------------------

@pytest.mark.parametrize("text", [
    "2024-11-30", "2024.11.30", "2024년 11월 30일", "20241130", "2024-11-30 14:35:12", "1,580,000원", "₩25,000",
    "$1,299.00", "15000000원", "ORD-20241130-000123", "INV-2024-0001234", "주문번호 2024113012345678",
    "송장 601234567890", "192.168.100.200", "v2.31.0", "1.2.840.113549.1.1.11", "timestamp 1732950000123",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "550e8400-e29b-41d4-a716-446655440000", "ISBN 978-89-6848-123-4", "좌표 37.5665, 126.9780",
])
def test_dates_prices_orders_and_code_are_not_pii(text):
    assert kinds(text) == []


def test_several_values_in_one_ticket_in_order():
    text = (f"고객 홍길동({RRN[:6]}-{RRN[6:]}) 연락처 010-1234-5678, 메일 hong@naver.com\n"
            f"카드 {VISA[:4]}-{VISA[4:8]}-{VISA[8:12]}-{VISA[12:]} 환불은 국민은행 123456-01-234567")
    assert [k for k, _ in kinds(text)] == ["rrn", "phone", "email", "card", "account"]


# -- hostile input --------------------------------------------------------------------------

def test_very_long_digit_runs_give_nothing():
    assert find_pii("1" * 100_000) == []
    assert find_pii("010" + "1" * 100_000) == []
    assert find_pii("1 " * 50_000) == []
    assert find_pii("1-" * 50_000 + "1") == []
    assert find_pii("12345678 " * 12_000) == []


def test_a_value_inside_a_longer_run_is_not_split_out():
    assert find_pii("99010-1234-567899") == []
    assert find_pii("4111111111111111" + "0" * 10) == []


def test_mixed_and_repeated_separators():
    assert kinds("010--1234--5678") == []  # two separators: not one value
    assert kinds("010-1234.5678") == [("phone", "010-1234.5678")]
    assert kinds("4111 1111-1111 1111") == [("card", "4111 1111-1111 1111")]


def test_hostile_at_signs_and_letters_stay_linear_and_find_nothing():
    assert find_pii("@" * 100_000) == []
    assert find_pii("a" * 100_000 + "@naver.com") == []
    assert find_pii(("a@" + "a-" * 30) * 1500) == []
    assert find_pii("M" * 100_000) == []


def test_100kb_of_korean_text_with_values_spread_through_it():
    filler = "안녕하세요. 2024년 11월 30일 주문(ORD-20241130-0001)은 39,800원입니다. "
    text = (filler * 40 + "연락처 010-2222-3333 ") * 30
    assert len(text.encode()) > 100_000
    found = find_pii(text)
    assert [f.kind for f in found] == [PiiKind.PHONE] * 30
    assert {text[f.start:f.end] for f in found} == {"010-2222-3333"}


def test_text_without_digits_or_at_sign_is_not_scanned():
    assert find_pii("숫자가 없는 평범한 한국어 문장입니다. " * 1000) == []
    assert find_pii("") == []


# -- any input --------------------------------------------------------------------------------

FRAGMENTS = ["010", "-", "1234", " ", "5678", "@", "naver.com", ".", "가", "계좌 ", "M", "4111", "+82", "(02)", "02)",
             "０１０", "\n", "abc", "900101", "1234567", "ORD-", "원", ":", "/", "https://x.kr/", "\t", "1588", "－", "x@",
             "전화 ", "12", "서울 ", "_", "S", "123A4567", "₩", "%"]


@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
@settings(max_examples=400, deadline=None)
def test_on_any_input_findings_are_ordered_disjoint_whole_values(text):
    found = find_pii(text)
    for f in found:
        assert 0 <= f.start < f.end <= len(text) and f.key
        assert text[f.start:f.end] == text[f.start:f.end].strip()
    for a, b in zip(found, found[1:]):
        assert a.end <= b.start
    result = PiiGuard().apply([text])
    assert result.total == len(found)
    assert result.texts[0].count("[") - text.count("[") == len(found)
