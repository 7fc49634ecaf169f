"""Schemathesis fuzzes the running ``chestlens serve`` from its own OpenAPI schema: bounded examples per
operation, and no answer may be a server error (5xx other than the documented 503)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]
EXAMPLES_PER_OPERATION = 25


def _check(case) -> None:
    response = case.call(timeout=60)
    assert response.status_code < 500 or response.status_code == 503, (response.status_code, response.text)
    if response.status_code >= 400:
        content_type = response.headers["content-type"]  # schemathesis keeps every header as a list
        assert content_type[0].startswith("application/problem+json"), response.text
        assert response.json()["detail"]


def test_no_server_errors(live_server):
    schema = schemathesis.openapi.from_url(f"{live_server}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        fuzz = settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck)
        )(given(case=operation.as_strategy())(_check))
        fuzz()
