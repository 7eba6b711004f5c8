"""The operator's command line: python -m app <command> (or the nicepay-cvs script).

One module per command; this one wires them into the parser."""

import argparse
from collections.abc import Callable

from app.cli.common import load_settings as load_settings  # scripts/dev.sh imports it here
from app.cli.doctor import cmd_doctor
from app.cli.migrate import cmd_migrate
from app.cli.operators import cmd_operators
from app.cli.reconcile import cmd_reconcile
from app.cli.replay import cmd_replay
from app.cli.serve import cmd_serve
from app.cli.simulate import SIM_ACTIONS, cmd_simulate
from app.cli.webhooks import cmd_webhooks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app", description="NICEPAY CVS payments service: operator commands."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("migrate", cmd_migrate, "Upgrade the database schema to head (or to a revision).")
    p.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    p.add_argument("--downgrade", action="store_true", help="downgrade to the revision instead")

    p = add("serve", cmd_serve, "Run the HTTP service under uvicorn (uvloop, httptools).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)

    p = add("webhooks", cmd_webhooks, "Outbound payment events: list, show, re-send.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("list", help="events, newest first")
    q.add_argument("--status", choices=["pending", "delivered", "given_up"])
    q.add_argument("--reference-no", help="only this payment's events")
    q.add_argument("--limit", type=int, default=50)
    q = actions.add_parser("show", help="one event: payload and delivery log (JSON)")
    q.add_argument("event_id")
    q = actions.add_parser("resend", help="queue an event again: same webhook-id and body")
    q.add_argument("event_id")

    p = add("reconcile", cmd_reconcile, "One reconcile sweep against NICEPAY's status inquiry.")
    p.epilog = (
        "Prints the sweep's report as JSON (checked, healed, expired, cancelled, confirmed, "
        "quarantined, abandoned, left, failed). Exit status 1 when an inquiry failed. "
        "Safe beside running services and other sweeps: for cron."
    )

    p = add("simulate", cmd_simulate, "Drive the NICEPAY simulator for one payment.")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "actions:\n" + "\n".join(f"  {k:<8} {v}" for k, v in SIM_ACTIONS.items())
    p.add_argument("action", choices=list(SIM_ACTIONS), help="what happens at NICEPAY")
    p.add_argument("payment", help="the payment's reference_no or tXid")
    p.add_argument(
        "--copies", type=int, default=1, help="pushes sent at once (pay, duplicate, reverse)"
    )
    p.add_argument("--simulator-url", help="the simulator (default NICEPAY_BASE_URL)")

    p = add("replay", cmd_replay, "Re-run a recorded notification through today's checks.")
    p.add_argument("notification_id", type=int, help="the ledger row's id")
    p.epilog = "Records a new ledger row (replay_of = the original) and prints its verdict as JSON."

    p = add(
        "operators", cmd_operators, "Console accounts: add (password from stdin), list, remove."
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("add", help="a new account; the password is read from standard input")
    q.add_argument("name")
    actions.add_parser("list", help="the accounts, oldest first")
    q = actions.add_parser("remove", help="delete an account (its sessions end at once)")
    q.add_argument("name")

    p = add("doctor", cmd_doctor, "Check settings, database, NICEPAY, the clock and the client IP.")
    p.add_argument(
        "--service-url",
        help="the running service, to ask which IP it sees (default PUBLIC_BASE_URL)",
    )
    p.epilog = "Prints one line per check (ok, warn, fail); exit status 1 on any fail. No secret is printed."
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    raise SystemExit(args.func(args))
