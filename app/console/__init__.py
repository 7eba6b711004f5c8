"""The operator console: server-rendered pages under /console for operators and support
staff (overview, payment search and detail with the ledger's verdicts, quarantine queue,
failing webhooks), their actions, and the `operators` command. Nothing else imports it but
app/main.py (`mount`) and the command line (`cmd_operators` in app/cli/operators.py)."""
