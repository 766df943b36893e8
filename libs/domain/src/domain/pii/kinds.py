"""The kinds of personal data the guard knows, by their contract codes."""
from __future__ import annotations

from enum import StrEnum


class PiiKind(StrEnum):
    RRN = "rrn"  # 주민등록번호 / 외국인등록번호
    PHONE = "phone"  # 휴대전화·유선·대표번호
    CARD = "card"  # Luhn-valid payment card
    BUSINESS_NO = "business_no"  # 사업자등록번호 (checksum-valid)
    PASSPORT = "passport"
    DRIVER_LICENSE = "driver_license"
    ACCOUNT = "account"  # 계좌번호, only near a bank/계좌 keyword
    EMAIL = "email"


# The Korean name each placeholder carries: `[전화번호1]` tells the model what was there.
KOREAN_NAME: dict[PiiKind, str] = {
    PiiKind.RRN: "주민등록번호",
    PiiKind.PHONE: "전화번호",
    PiiKind.CARD: "카드번호",
    PiiKind.BUSINESS_NO: "사업자등록번호",
    PiiKind.PASSPORT: "여권번호",
    PiiKind.DRIVER_LICENSE: "운전면허번호",
    PiiKind.ACCOUNT: "계좌번호",
    PiiKind.EMAIL: "이메일",
}
