"""schemathesis against the server's own OpenAPI schema, served for real (uvicorn on loopback, `serve --learn` on a
tiny model): requests generated from the schema, valid and invalid, never get a 5xx, and every error is an
OpenAI-style JSON body ({"error": {"message", "type", "param", "code"}})."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from forgetlab.serve import create_app

from .test_online import tiny_learner
from .test_serve import serving


@pytest.fixture(scope="module")
def served(tokenizer, tmp_path_factory):
    learner = tiny_learner(tokenizer, tmp_path_factory.mktemp("learner"), update={"steps": 1})
    with serving(create_app(learner.holder, learner, runs=tmp_path_factory.mktemp("runs"))) as url:
        yield url


def check_operation(op, mode: str, seen: list):
    """A hypothesis test calling the served operation `op` with requests generated from the schema."""
    @given(case=op.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(case):
        response = case.call(timeout=120)
        seen.append(response.status_code)
        assert response.status_code < 500, (op.label, case.body, case.query, response.text[:500])
        if response.status_code >= 400:
            error = response.json().get("error")
            assert isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"], \
                (op.label, response.text)
            assert {"message", "type", "param", "code"} <= set(error), (op.label, response.text)

    return call


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_request_gets_a_5xx_and_every_error_is_openai_style(served, mode):
    """Every operation of the schema, 30 generated requests each per mode (schemathesis's pytest plugin does not
    run under pytest 9, so the operations' hypothesis strategies are driven here)."""
    api = schemathesis.openapi.from_url(f"{served}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/chat/completions", "GET /v1/models", "GET /v1/memory",
                                               "DELETE /v1/memory/{fid}", "POST /admin/reload", "GET /v1/runs",
                                               "GET /v1/runs/{name}/report", "GET /v1/sessions/{assistant}",
                                               "POST /v1/sessions/{assistant}/rollback", "GET /v1/learning/history"}
    seen = []
    for op in operations:
        try:
            check_operation(op, mode, seen)()
        except Unsatisfiable:  # an operation without inputs (GET /v1/models) has no invalid requests to make
            assert mode == "negative" and not list(op.iter_parameters()) and op.label.startswith(("GET", "POST /v1/l",
                                                                                                  "POST /admin"))
    assert len(seen) >= 2 * len(operations)
    if mode == "negative":
        assert any(400 <= code < 500 for code in seen)
