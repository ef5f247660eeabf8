"""Helpers for the API tests: a central wired to a real database with the FastAPI app and one token per role.

(Named test_api_* so it belongs to the API tests; it holds no tests itself.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from central.tokens import ROLES, create_token
from tests.central_support import Central, incident_payload, make_central

# A real 1x1 PNG (uploads are decoded fully, so it must decode).
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c49444154081d633851a101000374016959"
    "dfbb7c0000000049454e44ae426082"
)


@dataclass
class ApiEnv:
    central: Central
    client: TestClient
    tokens: dict[str, str]

    @property
    def app(self) -> Any:
        return self.client.app

    def auth(self, role: str | None) -> dict[str, str]:
        if role is None:
            return {}
        if role == "invalid":
            return {"Authorization": "Bearer gwc_not-a-real-token"}
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def new_case(self, type: str = "street_vending", **kwargs: Any) -> int:  # noqa: A002
        """Open a new case through the real ingest path (a fresh zone, so no dedup); returns its id."""
        kwargs.setdefault("zone", f"zone-{uuid.uuid4().hex[:8]}")
        res = self.central.send(incident_payload(type=type, **kwargs))
        assert res.case_id is not None, res
        return res.case_id


def make_api(db_url: str, tmp_path: Path, config: dict[str, Any] | None = None, *, web: bool = False) -> ApiEnv:
    central = make_central(db_url, tmp_path, config)
    app = central.app(include_web=web)
    tokens = {}
    with central.session_factory() as s:
        for role in ROLES:
            tokens[role], _ = create_token(s, f"test-{role}", role)
        s.commit()
    return ApiEnv(central, TestClient(app), tokens)
