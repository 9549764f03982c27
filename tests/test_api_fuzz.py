"""Fuzz every operation of the API from its own OpenAPI schema (schemathesis): no 5xx, ever.

Bounded and deterministic: a fixed number of examples per operation and mode, derandomised
(fixed seed), no example database, no shrinking; valid data (positive mode) and data that breaks
the schema (negative mode), sent with a valid admin key to the real app in-process, whose default
model is the echoing ``TestModel`` double (model calls are instant). Every error answer must be
in the OpenAI error shape. All failures are collected and reported together.
"""

from __future__ import annotations

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from conftest import ADMIN_KEY, open_api_services
from schemathesis import GenerationMode

from sovereign.server.app import create_app

# Examples per operation: valid data is cheap to make, schema-breaking data slower.
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    # The light perception engines: fuzzed speech requests are spoken by espeak-ng, not the neural voice.
    services = open_api_services(tmp_path_factory.mktemp("fuzz") / "home",
                                 '[perception]\ntranscription = "whisper-tiny.en"\nspeech = "espeak-ng"\nmax_speech_chars = 200\n')
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(services, preload=False))
    yield schema
    services.close()


def _problem(case, response) -> str | None:
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        try:
            error = response.json().get("error")
        except ValueError:
            return f"{response.status_code} body is not JSON: {response.text[:200]}"
        if not isinstance(error, dict) or not {"message", "type", "code", "param"} <= set(error):
            return f"{response.status_code} not in the error shape: {response.text[:200]}"
    return None


def _fuzz(operation, mode: GenerationMode, failures: list[str]) -> None:
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                         suppress_health_check=list(hypothesis.HealthCheck))
    def check(case) -> None:
        response = case.call(headers=AUTH, timeout=300)  # the first memory call loads the embedder
        problem = _problem(case, response)
        if problem is not None:
            failures.append(f"{operation.label} [{mode.value}] {problem}\n    {case.as_curl_command()}")

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        pass  # negative mode: an operation with no inputs cannot be given wrong ones


@pytest.mark.timeout(900)  # ~40 operations now (audio, responses, costs, kb, swarm...): minutes on a busy box
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_operation_answers_a_server_error(api_schema, mode):
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20  # chat, models, runs, memory, approvals, keys, identities, caps, audit...
    for operation in operations:
        _fuzz(operation, mode, failures)
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:30])
