"""NICEPAY V1 merchantToken formulas (REFERENCE.md §0, §1.3, §3, §4).

All are SHA-256 over a plain concatenation, lowercase hex. The merchant key goes in and
a digest comes out; neither is ever logged.
"""

import hashlib
import hmac


def reference_token(imid: str, reference_no: str, amt: int | str, merchant_key: str) -> str:
    """Registration (onePass.do) and status inquiry (onePassStatus.do)."""
    return hashlib.sha256(f"{imid}{reference_no}{amt}{merchant_key}".encode()).hexdigest()


def txid_token(imid: str, txid: str, amt: int | str, merchant_key: str) -> str:
    """Cancel (onePassAllCancel.do) and the dbProcessUrl notification."""
    return hashlib.sha256(f"{imid}{txid}{amt}{merchant_key}".encode()).hexdigest()


def tokens_equal(expected: str, received: str) -> bool:
    """Constant-time comparison; a token is ASCII hex, anything else simply fails."""
    return hmac.compare_digest(expected.encode(), received.encode("utf-8", "replace"))
