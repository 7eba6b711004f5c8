"""Prometheus metrics: one place for every counter and histogram the service exports."""

from prometheus_client import Counter, Gauge, Histogram

NOTIFICATIONS = Counter(
    "nicepay_notifications_total", "Notifications received, by outcome", ["outcome"]
)
NOTIFICATION_CHECK_FAILURES = Counter(
    "nicepay_notification_check_failures_total", "Failed notification checks, by check", ["check"]
)
REGISTRATIONS = Counter("cvs_registrations_total", "Registration attempts, by result", ["result"])
NICEPAY_CALLS = Counter(
    "nicepay_calls_total", "Calls to NICEPAY, by endpoint and resultCd", ["endpoint", "result_cd"]
)
NICEPAY_LATENCY = Histogram(
    "nicepay_call_seconds",
    "NICEPAY call latency",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECONCILE = Counter("reconcile_payments_total", "Reconciled payments, by outcome", ["outcome"])
RECONCILE_LAST_SWEEP = Gauge(
    "reconcile_last_sweep_timestamp_seconds", "When the last reconcile sweep finished (Unix time)"
)
INQUIRIES = Counter(
    "nicepay_inquiries_total",
    "Status inquiries asked of NICEPAY, by reason (push_confirmation, schedule, expiry, refresh)",
    ["reason"],
)
RECONCILE_BACKLOG = Gauge(
    "reconcile_backlog", "Scheduled status checks due but not yet done (at the last sweep's start)"
)
RECONCILE_OLDEST_OVERDUE = Gauge(
    "reconcile_oldest_overdue_seconds",
    "How long the most overdue scheduled check had waited (at the last sweep's start)",
)
TRANSITIONS = Counter("payment_transitions_total", "Payment state changes, by new status", ["to"])
STORE_BATCH = Histogram(
    "payments_store_batch_writes",
    "Payment writes sent together in one PostgreSQL transaction (1: a write alone)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 100),
)
WEBHOOK_DELIVERIES = Counter(
    "webhook_deliveries_total", "Outbound webhook attempts, by result", ["result"]
)

CONNECTIONS_REFUSED = Counter(
    "http_connections_closed_total",
    "Connections the server closed on its own: deadline, too_many_connections, headers_too_large",
    ["reason"],
)


def observe_nicepay_call(endpoint: str, seconds: float, result_cd: str) -> None:
    NICEPAY_CALLS.labels(endpoint, result_cd).inc()
    NICEPAY_LATENCY.labels(endpoint).observe(seconds)
