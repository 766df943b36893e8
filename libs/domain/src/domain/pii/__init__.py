"""Korean personal-data guard: detectors for 주민등록번호, phones, cards, 사업자등록번호,
passports, driver's licences, bank accounts and e-mail, and the off/mask/block policy.
Pure: standard library only, no network, no model."""
from domain.pii.detect import PiiFinding, find_pii
from domain.pii.guard import PiiGuard, PiiPolicy, PiiResult, PiiScanner, pii_detected
from domain.pii.kinds import KOREAN_NAME, PiiKind

__all__ = ["KOREAN_NAME", "PiiFinding", "PiiGuard", "PiiKind", "PiiPolicy", "PiiResult", "PiiScanner",
           "find_pii", "pii_detected"]
