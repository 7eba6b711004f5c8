"""While the app serves, its startup heap is out of the cycle collector's way (app/main.py
collector_tuned); when it stops, the collector is as it was."""

import gc
from pathlib import Path

from app.main import GC_YOUNG_THRESHOLD
from tests.observability.test_probes import probe, service


async def test_startup_heap_is_frozen_while_serving_and_released_after(tmp_path: Path) -> None:
    before = gc.get_threshold(), gc.get_freeze_count()
    async with service(f"sqlite+aiosqlite:///{tmp_path / 'gc.db'}") as client:
        assert gc.get_freeze_count() > 10_000  # FastAPI, SQLAlchemy, pydantic: far more
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert await probe(client, "/healthz") == (200, {"status": "ok"})
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
