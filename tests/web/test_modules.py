"""The chat app's modules without a browser: node's own test runner over web/spec, which checks
the message tree, the saver, the stream reader, titles and formats on many random cases."""

import shutil
import subprocess
from pathlib import Path

WEB = Path(__file__).parents[2] / "web"


def test_the_apps_modules_pass_their_node_tests():
    node = shutil.which("node")
    assert node, "node is needed to build and test the chat app (scripts/setup.sh installs it)"
    assert (WEB / "node_modules" / "eventsource-parser").is_dir(), "run scripts/setup.sh: the npm packages are missing"
    run = subprocess.run([node, "--test", "spec/"], cwd=WEB, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 0" not in run.stdout
