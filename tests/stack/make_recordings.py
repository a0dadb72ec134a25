"""Make the replay fixtures: real collector output of small agent sessions, plus what the live
pipeline decided about them.

usage: sudo .venv/bin/python -m tests.stack.make_recordings [NAME ...]

For each workload below it starts the whole stack (tests/stack/stack.py, real supervisord and real
eBPF), records the collector's stream with `casa record` while the test agent runs the workload,
and taps ``analyzer.decision`` at the same time. It writes, in tests/fixtures/recordings/:

    NAME.casarec          the recording (cli/recording.py format)
    NAME.decisions.json   [{"action", "score", "increment", "rules": [names]}] in publication order
    casa.json, rules.json the agent profile and rules the recordings were made with (one per run)

tests/stack/test_replay.py replays each recording through the unprivileged stages and asserts
the same decisions. Re-run this script when the event schema or the rules change on purpose.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

from tests.stack.stack import CHECKOUT, Stack

OUT = CHECKOUT / "tests" / "fixtures" / "recordings"

WORKLOADS: dict[str, str] = {
    # write_then_exec_same_path + write_then_exec_from_suspicious_path = 9: ALERT
    "write-then-exec": ("printf '#!/bin/sh\\necho hi\\n' > \"$PWD/helper.sh\"; chmod +x \"$PWD/helper.sh\"; "
                        "\"$PWD/helper.sh\"; true"),
    # a sensitive file read (denied: the attempt counts), then a copied binary run from /dev/shm
    "sensitive-then-exec": ("cat /etc/shadow 2>/dev/null; cp /bin/true /dev/shm/casa-t-$$; "
                            "/dev/shm/casa-t-$$; rm -f /dev/shm/casa-t-$$"),
    # ordinary work: no decision at all
    "benign": "ls / > /dev/null; cat /etc/hostname > /dev/null; echo done",
}


def _decision_summary(line: str) -> dict:
    d = json.loads(line)["event"]
    return {"action": d["action"], "score": d["score"], "increment": d["increment"],
            "rules": sorted(t["name"] for t in d["triggered_rules"])}


def record(st: Stack, name: str, script: str) -> None:
    rec = OUT / f"{name}.casarec"
    casa = [sys.executable, "-m", "cli"]
    env_args = ["--bus-dir", str(st.bus_dir)]
    recorder = subprocess.Popen([*casa, "record", str(rec), "--stream", "collector", *env_args], cwd=CHECKOUT)
    tap = subprocess.Popen([*casa, "tap", "--topic", "analyzer.decision", *env_args], cwd=CHECKOUT,
                           stdout=subprocess.PIPE, text=True)
    time.sleep(2.0)                        # both SUBs connected and subscribed
    before = len(st.log("sessions.log"))
    done = st.run_agent(script)
    assert done.returncode == 0, done.stderr
    st.wait_until(lambda: any(r["reason"] == "session_closed" for r in st.log("sessions.log")[before:]),
                  30, f"the {name} session to close")
    time.sleep(2.0)
    for p in (recorder, tap):
        p.send_signal(signal.SIGINT)
    recorder.wait(10)
    out, _ = tap.communicate(timeout=10)
    decisions = [_decision_summary(line) for line in out.splitlines() if line.strip()]
    (OUT / f"{name}.decisions.json").write_text(json.dumps(decisions, indent=2) + "\n")
    print(f"{name}: {rec.stat().st_size} bytes, {len(decisions)} decisions", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(WORKLOADS)
    OUT.mkdir(parents=True, exist_ok=True)
    with Stack() as st:
        shutil.copy(st.config, OUT / "casa.json")
        shutil.copy(st.rules, OUT / "rules.json")
        for name in names:
            record(st, name, WORKLOADS[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
