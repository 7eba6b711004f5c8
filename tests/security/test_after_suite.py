"""After the whole suite: no merchant key, storefront key, webhook secret, password inside a
URL and no raw merchantToken in anything the service wrote (every test's captured stderr,
every real process's log, every command line's output) or in any database a real-process test
left behind (its ledger rows, and the whole database: the SQLite file or pg_dump's output).
Runs last (tests/security/conftest.py moves it there).
"""

import json
from collections.abc import Iterator

import pytest

from app.config import SANDBOX_IMID, SANDBOX_MERCHANT_KEY
from app.nicepay.tokens import txid_token
from tests.cli import test_doctor
from tests.conftest import STOREFRONT_KEY
from tests.procs import DATABASE_DUMPS, LEDGER_DUMPS, LOG_FILES, RAW_TOKENS
from tests.security import test_exposure, test_unsafe_settings
from tests.security.conftest import PLUGIN, CapturedStderr

pytestmark = pytest.mark.after_suite

SECRETS = {
    "merchant key": SANDBOX_MERCHANT_KEY,
    "storefront key": STOREFRONT_KEY,
    **{f"doctor's secret {n}": secret for n, secret in enumerate(test_doctor.SECRETS)},
    **{f"secret inside a URL {n}": s for n, s in enumerate(test_exposure.URL_SECRETS)},
    "production storefront key": test_exposure.PROD_KEY,
    "production merchant key": test_unsafe_settings.MERCHANT_KEY,
}


def outputs(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    captured = request.config.pluginmanager.get_plugin(PLUGIN)
    assert isinstance(captured, CapturedStderr)
    yield from captured.sections
    for path in LOG_FILES:
        if path.exists():
            yield str(path), path.read_text("utf-8", "replace")


def ledger_rows() -> Iterator[tuple[str, dict[str, object]]]:
    for path in LEDGER_DUMPS:
        for row in json.loads(path.read_text()):
            yield f"{path.name} row {row['id']}", row


def tokens_behind(rows: list[tuple[str, dict[str, object]]]) -> set[str]:
    """The genuine token of every push in the ledgers, rebuilt from its tXid and amt."""
    return {
        txid_token(SANDBOX_IMID, str(row["txid"]), str(row["amt"]), SANDBOX_MERCHANT_KEY)
        for _, row in rows
        if row["txid"] and row["amt"]
    }


def test_no_key_and_no_raw_token_anywhere(request: pytest.FixtureRequest) -> None:
    rows = list(ledger_rows())
    tokens = RAW_TOKENS | tokens_behind(rows)
    texts = list(outputs(request))
    assert tokens and texts, "nothing to scan: the suite ran no notification"

    leaks = []
    for where, text in texts:
        leaks += [f"{name} in {where}" for name, secret in SECRETS.items() if secret in text]
        leaks += [f"raw token {t[:8]}... in {where}" for t in tokens if t in text]
    for where, row in rows:
        fields = row["fields"]
        assert isinstance(fields, dict)
        if "merchantToken" in fields:
            leaks.append(f"merchantToken field in {where}")
        stored = json.dumps(row, ensure_ascii=False)
        leaks += [f"{name} in {where}" for name, secret in SECRETS.items() if secret in stored]
        leaks += [f"raw token {t[:8]}... in {where}" for t in tokens if t in stored]
    assert not leaks, "\n".join(leaks[:20])


def test_no_key_and_no_raw_token_in_any_database_dump() -> None:
    rows = list(ledger_rows())
    tokens = RAW_TOKENS | tokens_behind(rows)
    assert DATABASE_DUMPS, "nothing to scan: the suite left no database behind"
    leaks = []
    for path in DATABASE_DUMPS:
        # Bytes as text: a SQLite page or a COPY line holds the value as written.
        text = path.read_bytes().decode("utf-8", "replace")
        leaks += [f"{name} in {path.name}" for name, secret in SECRETS.items() if secret in text]
        leaks += [f"raw token {t[:8]}... in {path.name}" for t in tokens if t in text]
    assert not leaks, "\n".join(leaks[:20])
