"""The README's tour: every shell block it shows runs in scripts/quickstart.sh word for word (or the README says
why not), and the script runs the tour against a real server on a fresh workspace."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SCRIPT = ROOT / "scripts" / "quickstart.sh"
SKIP = re.compile(r"<!-- not run by scripts/quickstart\.sh: (?P<why>[^>]{10,}) -->")
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```bash\n(?P<body>.*?)\n```", re.S)


def _bash_blocks() -> list[tuple[str, str]]:
    """Each ```bash block of the README with the line just before it."""
    return [(m["before"], m["body"]) for m in BLOCK.finditer(README.read_text())]


def test_every_shell_block_of_the_readme_is_in_the_quickstart_or_says_why_not() -> None:
    script = SCRIPT.read_text()
    run, skipped = [], []
    for before, body in _bash_blocks():
        if SKIP.fullmatch(before.strip()):
            skipped.append(body)
        else:
            assert body in script, f"README block not in scripts/quickstart.sh word for word:\n{body}"
            run.append(body)
    # the tour's four steps and "More from the CLI" run; the skipped blocks are the two commands, the tour's
    # server address and the research data sets, nothing more
    assert len(run) >= 5 and len(skipped) <= 3, (len(run), len(skipped))
    positions = [script.index(body) for body in run]
    assert positions == sorted(positions), "the script runs the README's blocks in another order"


def test_the_tour_uses_only_files_a_clone_has_and_reads_job_ids_from_responses() -> None:
    tour = README.read_text().split("## Five-minute tour", 1)[1].split("\n## ", 1)[0]
    for path in re.findall(r"examples/[\w.-]+", tour):
        assert (ROOT / path).is_file(), path
    assert "../shared" not in tour and "gold-sentiment" not in tour
    assert not re.search(r"/jobs/\d", tour), "a job id is typed in instead of read from a response"
    labels = {}
    for line in (ROOT / "examples" / "weather.csv").read_text().splitlines()[1:]:
        user = line.split(",", 1)[0]
        labels[user] = labels.get(user, 0) + 1
    assert labels == {"skier": 40, "sunbather": 40}  # enough to train: the default needs 4 and holds some out
    assert len((ROOT / "examples" / "farmer.csv").read_text().splitlines()) == 41


@pytest.mark.e2e
def test_quickstart_script_runs_the_tour_against_a_real_server(tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("setsid") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("scripts/quickstart.sh needs curl and setsid (scripts/setup.sh installs curl)")
        pytest.skip("curl or setsid is missing")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("LOCALIZE_HOME", None)  # the script makes a fresh workspace of its own
    started = time.monotonic()
    result = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "quickstart: every command of the tour ran" in output
    assert re.search(r"job \d+: succeeded", output)
    assert not list(tmp_path.glob("localize-quickstart.*")), "the script left its workspace behind"
    print(f"quickstart.sh took {time.monotonic() - started:.0f} s")
