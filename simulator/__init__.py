"""A stand-in for NICEPAY V1's convenience-store (CVS) API, for tests and local runs.

It owns the three NICEPAY endpoints (onePass.do, onePassStatus.do, onePassAllCancel.do), an
in-memory ledger of registered payment codes, the dbProcessUrl pushes a till would trigger, and
fault switches (slow, 5xx, garbage or length-prefixed answers, duplicated pushes). It speaks the
protocol through `app.nicepay` and knows nothing else about the service.

Everything public lives in `simulator.app` (import from there: the editable install maps
`simulator` as a namespace package, so nothing here is guaranteed to run).
"""
