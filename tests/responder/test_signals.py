"""PidfdSender on real processes: the checked process is hit, a changed one never is."""

from __future__ import annotations

import dataclasses
import signal
import subprocess

from responder.procfs import read_proc
from responder.signals import PidfdSender


def test_a_pid_whose_start_time_changed_is_not_signalled_and_the_right_one_is():
    child = subprocess.Popen(["sleep", "30"])
    try:
        info = read_proc(child.pid)
        assert info is not None and info.ppid > 1
        sender = PidfdSender()
        stranger = dataclasses.replace(info, start_ticks=info.start_ticks + 1)   # "recycled"
        assert sender.send(stranger, signal.SIGKILL) == "recycled pid (changed before the signal)"
        assert child.poll() is None
        assert sender.send(info, signal.SIGSTOP) is None
        assert sender.send(info, signal.SIGKILL) is None          # the same pidfd, kept
        assert child.wait(10) == -signal.SIGKILL
        sender.close()
    finally:
        if child.poll() is None:
            child.kill()


def test_a_process_that_exited_is_reported_gone_not_an_error():
    child = subprocess.Popen(["true"])
    info = read_proc(child.pid)
    child.wait()
    sender = PidfdSender()
    if info is not None:                    # it may have exited before we read it
        assert sender.send(info, signal.SIGKILL) in ("gone", "recycled pid (changed before the signal)")
    sender.close()
