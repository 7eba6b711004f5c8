"""`python -m app webhooks list|show|resend`: the operator's view of the outbox, as a real
process on the service's database."""

import asyncio
import json
import sys

from tests import procs
from tests.conftest import StackFactory
from tests.webhooks.conftest import SECRET, all_in, attempts_of, outbox, pump, webhook_settings
from tests.webhooks.receiver import Receiver


async def cli(database_url: str, receiver: Receiver, *args: str) -> tuple[int, str, str]:
    env = procs.child_env(
        app_env="test",
        database_url=database_url,
        merchant_webhook_url=receiver.url,
        merchant_webhook_secret=SECRET,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "webhooks",
        *args,
        cwd=procs.ARTIFACTS,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_list_show_and_resend_a_given_up_event(
    stack_factory: StackFactory, receiver: Receiver, clean_db: str
) -> None:
    receiver.script(500)
    async with stack_factory(**webhook_settings(receiver, webhook_max_attempts=1)) as stack:
        created = await stack.register()
        await pump(stack.services, all_in(stack.services, "given_up"), "given up")
        [event] = await outbox(stack.services)

        code, out, _ = await cli(clean_db, receiver, "list", "--status", "given_up")
        assert code == 0
        header, row = out.strip().splitlines()
        assert header.split("\t")[:4] == ["event_id", "type", "reference_no", "status"]
        cells = row.split("\t")
        assert cells[:5] == [
            event.event_id,
            "cvs_payment.registered",
            created["reference_no"],
            "given_up",
            "1",
        ]
        assert cells[-1] == "HTTP 500"
        code, out, _ = await cli(clean_db, receiver, "list", "--status", "delivered")
        assert (code, out.strip().splitlines()[1:]) == (0, [])

        code, out, _ = await cli(clean_db, receiver, "show", event.event_id)
        shown = json.loads(out)
        assert code == 0 and shown["status"] == "given_up"
        assert [a["status_code"] for a in shown["delivery_log"]] == [500]
        assert shown["payload"] == json.loads(event.body)

        code, out, _ = await cli(clean_db, receiver, "resend", event.event_id)
        assert code == 0 and event.event_id in out
        [queued] = await outbox(stack.services)
        assert (queued.status, queued.attempts) == ("pending", 0)
        await pump(stack.services, all_in(stack.services, "delivered"), "re-sent and delivered")
        statuses = [a.status_code for a in await attempts_of(stack.services, event.event_id)]
        assert statuses == [500, 200]
        assert [r.webhook_id for r in receiver.received()] == [event.event_id] * 2

        code, _, err = await cli(clean_db, receiver, "resend", "msg_nope")
        assert code == 1 and "no webhook event 'msg_nope'" in err
