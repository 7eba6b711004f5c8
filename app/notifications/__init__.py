"""The dbProcessUrl: client-IP resolution, verification, the ledger, exactly-once apply."""
