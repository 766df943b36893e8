"""The PII policy: off leaves texts alone, mask replaces each value with a numbered
placeholder consistent across a request's texts, block refuses with pii_detected naming
kinds, never values; the PII_POLICY setting."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from chat_api.errors import ERROR_TABLE, http_error, message_of, openai_error_body, openai_status
from chat_api.settings import ChatApiSettings
from domain.errors import DomainError, ErrorKind, PiiDetected
from domain.pii import PiiGuard, PiiKind, PiiPolicy, PiiScanner

PHONE_A, PHONE_B = "010-2345-6789", "010-9876-5432"
CARD_A, CARD_B = "4111-1111-1111-1111", "5555 5555 5555 4444"
RRN = "900101-1234568"


def test_mask_replaces_each_value_whole_with_a_numbered_placeholder_naming_its_kind():
    result = PiiGuard(PiiPolicy.MASK).apply([
        f"첫 카드 {CARD_A}, 둘째 카드 {CARD_B}, 연락처 {PHONE_A}, 주민번호 {RRN}, 메일 kim@naver.com",
    ])
    assert result.texts == ["첫 카드 [카드번호1], 둘째 카드 [카드번호2], 연락처 [전화번호1], 주민번호 [주민등록번호1], 메일 [이메일1]"]
    assert result.counts == {PiiKind.CARD: 2, PiiKind.PHONE: 1, PiiKind.RRN: 1, PiiKind.EMAIL: 1}
    assert result.total == 5


def test_the_same_value_gets_the_same_placeholder_across_the_texts_of_a_request_however_written():
    result = PiiGuard().apply([
        f"제 번호는 {PHONE_A} 이고 카드는 {CARD_A} 입니다.",
        "네, 확인했습니다.",
        f"아까 번호 {PHONE_A.replace('-', '')} 말고 {PHONE_B} 로 바꿔 주세요. 카드 {CARD_A.replace('-', ' ')} 취소",
        "연락처 ０１０－２３４５－６７８９ 맞나요? 메일 KIM@NAVER.COM, kim@naver.com",
    ])
    assert result.texts == [
        "제 번호는 [전화번호1] 이고 카드는 [카드번호1] 입니다.",
        "네, 확인했습니다.",
        "아까 번호 [전화번호1] 말고 [전화번호2] 로 바꿔 주세요. 카드 [카드번호1] 취소",
        "연락처 [전화번호1] 맞나요? 메일 [이메일1], [이메일1]",
    ]
    assert result.counts == {PiiKind.PHONE: 4, PiiKind.CARD: 2, PiiKind.EMAIL: 2}  # every occurrence counts


def test_a_scanner_reused_across_texts_numbers_like_the_whole_request_call():
    texts = [f"카드 {CARD_A}", f"다른 카드 {CARD_B}", f"처음 카드 {CARD_A} 취소"]
    scanner = PiiGuard().scanner()
    assert [scanner.process(t) for t in texts] == PiiGuard().apply(texts).texts
    assert scanner.counts == {PiiKind.CARD: 3}
    scanner.raise_if_blocked()  # mask never raises


def test_placeholders_already_in_the_history_keep_their_meaning():
    # History was stored masked; a new number must not reuse [전화번호1] or [전화번호2].
    history = "user: 제 번호 [전화번호1]\nassistant: [전화번호1] 로 연락드릴게요. 예비 번호 [전화번호2]"
    result = PiiGuard().apply([f"새 번호 {PHONE_B} 입니다", history])
    assert result.texts[0] == "새 번호 [전화번호3] 입니다"
    assert result.texts[1] == history
    scanner = PiiScanner(PiiPolicy.MASK)
    assert scanner.process(history) == history
    assert scanner.process(f"새 번호 {PHONE_B}") == "새 번호 [전화번호3]"
    assert scanner.counts == {PiiKind.PHONE: 1}


def test_masking_is_idempotent():
    guard = PiiGuard()
    once = guard.apply([f"{RRN} {PHONE_A} {CARD_A} 국민은행 123456-01-234567 여권 M12345678"]).texts
    again = guard.apply(once)
    assert once == ["[주민등록번호1] [전화번호1] [카드번호1] 국민은행 [계좌번호1] 여권 [여권번호1]"]
    assert again.texts == once and again.total == 0


def test_off_sends_everything_as_is_and_counts_nothing():
    texts = [f"주민번호 {RRN}, {PHONE_A}", ""]
    result = PiiGuard(PiiPolicy.OFF).apply(texts)
    assert result.texts == texts and result.counts == {}
    # a per-key override beats the server-wide policy
    assert PiiGuard(PiiPolicy.OFF).apply(texts, PiiPolicy.MASK).texts[0] == "주민번호 [주민등록번호1], [전화번호1]"
    assert PiiGuard(PiiPolicy.MASK).apply(texts, PiiPolicy.OFF).texts == texts


def test_block_refuses_naming_every_kind_found_and_no_value():
    texts = [f"번호 {PHONE_A}", "그냥 질문입니다", f"카드 {CARD_A} 주민 {RRN} 또 {PHONE_B}"]
    with pytest.raises(PiiDetected) as caught:
        PiiGuard(PiiPolicy.BLOCK).apply(texts)
    error = caught.value
    assert isinstance(error, DomainError)
    assert error.code == "pii_detected" and error.kind is ErrorKind.PII_DETECTED
    assert error.kinds == ["rrn", "phone", "card"]  # contract order, each once
    assert "주민등록번호" in message_of(error, "ko") and "전화번호" in message_of(error, "ko") and "카드번호" in message_of(error, "ko")
    assert "rrn, phone, card" in message_of(error, "en")
    for message in (message_of(error, "ko"), message_of(error, "en"), str(error)):
        for value in (PHONE_A, PHONE_B, CARD_A, RRN, "2345", "1111", "900101"):
            assert value not in message


def test_block_lets_a_clean_request_through_unchanged():
    texts = ["2024년 11월 30일 주문(ORD-20241130-0001) 39,800원 환불 문의"]
    result = PiiGuard(PiiPolicy.BLOCK).apply(texts)
    assert result.texts == texts and result.total == 0


def test_block_through_a_scanner_raises_only_when_asked_after_the_last_text():
    scanner = PiiGuard(PiiPolicy.BLOCK).scanner()
    assert scanner.process(f"번호 {PHONE_A}") == f"번호 {PHONE_A}"  # nothing is rewritten under block
    assert scanner.counts == {PiiKind.PHONE: 1}
    with pytest.raises(PiiDetected) as caught:
        scanner.raise_if_blocked()
    assert caught.value.kinds == ["phone"]


def test_pii_detected_maps_to_400_in_both_dialects():
    scanner = PiiGuard(PiiPolicy.BLOCK).scanner()
    scanner.process(RRN)
    with pytest.raises(PiiDetected) as caught:
        scanner.raise_if_blocked()
    assert ErrorKind.PII_DETECTED in ERROR_TABLE
    assert http_error(caught.value).status == 400 and openai_status(caught.value) == 400
    body = openai_error_body(caught.value, "en")
    assert body["error"]["code"] == "pii_detected" and body["error"]["type"] == "invalid_request_error"
    assert "rrn" in body["error"]["message"] and "900101" not in str(body)
    assert "주민등록번호" in openai_error_body(caught.value, "ko")["error"]["message"]


def test_every_error_kind_has_an_http_mapping():
    assert set(ERROR_TABLE) == set(ErrorKind)


def test_pii_policy_setting_defaults_to_mask_and_refuses_unknown_values(monkeypatch):
    monkeypatch.delenv("PII_POLICY", raising=False)
    assert ChatApiSettings(_env_file=None).pii_policy is PiiPolicy.MASK
    monkeypatch.setenv("PII_POLICY", "block")
    assert ChatApiSettings(_env_file=None).pii_policy is PiiPolicy.BLOCK
    monkeypatch.setenv("PII_POLICY", " Off ")
    assert ChatApiSettings(_env_file=None).pii_policy is PiiPolicy.OFF
    monkeypatch.setenv("PII_POLICY", "redact")
    with pytest.raises(ValidationError):
        ChatApiSettings(_env_file=None)


def test_a_stored_reply_is_masked_under_mask_and_block_and_never_counted():
    for policy in (PiiPolicy.MASK, PiiPolicy.BLOCK):
        scanner = PiiGuard(policy).scanner()
        assert scanner.stored(f"고객센터 {PHONE_A} 로 연락하세요") == "고객센터 [전화번호1] 로 연락하세요"
        assert scanner.total == 0
        scanner.raise_if_blocked()  # what the model wrote is not the caller's request
    assert PiiGuard(PiiPolicy.OFF).scanner().stored(PHONE_A) == PHONE_A
