"""schemathesis throws generated requests at every operation in /openapi.json: no answer may be a 5xx."""

import subprocess
import sys
from pathlib import Path

from conftest import API_KEY


def test_no_generated_request_gets_a_server_error(server):
    cli = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            *(str(cli), "run", f"{server}/openapi.json", "--checks", "not_a_server_error"),
            *("-n", "25", "--request-timeout", "60", "--generation-deterministic"),
            *("-H", f"Authorization: Bearer {API_KEY}"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "generated" in result.stdout
