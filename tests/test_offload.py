"""A burst's replies composed by worker processes (mailbot/offload.py): the same bytes as
composing in place, a failure fails only its own request, lost workers change nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailbot import offload
from mailbot.offload import ComposeFailed, Composer, compose_messages
from tests.botenv import make_bot, request_mail
from tests.respond.test_templates import full_context


def _jobs(n: int) -> list[dict[str, Any]]:
    now = datetime(2026, 11, 1, 0, 3, tzinfo=UTC)
    return [dict(outcome="issued", context=full_context(code=f"K-{i:04d}",
                                                        patron_name=f"Ala Kot{i}"),
                 languages=("pl", "en"), library_name="Biblioteka", mailbox_address="e@lib.test",
                 to=f"p{i}@patron.test", original_subject="LEGIMI",
                 original_message_id=f"<m{i}@patron.test>", templates_dir=None,
                 request_key=f"k{i}", now=now) for i in range(n)]


def _bot(tmp_path, imap_user, smtp_sink, *, requests: int, codes: int):
    """``requests`` valid requests in arrival order (w0, w1, …), ``codes`` codes."""
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    w = bot.window()
    ok = f"{w.year + 1}-12-31;0;0;{w.year}-01-15;{w.year}-02-01"
    bot.import_readers([f"01500{i:02d};Ala;Praca{i};w{i}@patron.test;{ok}"
                        for i in range(requests)])
    bot.import_codes([f"WORK-{i:04d}" for i in range(codes)])
    for i in range(requests):
        raw, _ = request_mail(f"w{i}@patron.test", "LEGIMI", f"Ala Praca{i} 01500{i:02d}")
        imap_user.append(raw, internaldate=w + timedelta(seconds=i))
    return bot


@pytest.fixture
def executor():
    # The workers are used once they are up (until then, work is done in place).
    pool = offload.pool() if offload.start(wait=True) else None
    if pool is None:
        pytest.fail("this machine has one CPU: the reply workers cannot be tested here")
    return pool


def test_workers_compose_the_very_bytes_composing_in_place_gives(executor) -> None:
    jobs = _jobs(40)  # three tasks: 16 + 16 + 8
    rows = [{"request_id": i, "message": None} for i in range(40)]
    composer = Composer(executor)
    for i, (row, job) in enumerate(zip(rows, jobs)):
        composer.add(i, row, job)
    composer.finish()
    assert [row["message"] for row in rows] == compose_messages(jobs)
    assert all(isinstance(row["message"], bytes) for row in rows)


def test_a_reply_that_cannot_be_composed_fails_its_own_request_only(executor) -> None:
    jobs = _jobs(20)
    jobs[17]["outcome"] = "no_such_outcome"
    composer = Composer(executor)
    rows = [{"message": None} for _ in jobs]
    for i, (row, job) in enumerate(zip(rows, jobs)):
        composer.add(1000 + i, row, job)
    with pytest.raises(ComposeFailed) as failed:
        composer.finish()
    assert failed.value.key == 1017 and "no_such_outcome" in failed.value.trace


def test_lost_workers_leave_the_replies_to_be_composed_in_place() -> None:
    broken = ProcessPoolExecutor(max_workers=1)
    broken.shutdown()
    jobs = _jobs(20)
    rows = [{"message": None} for _ in jobs]
    composer = Composer(broken)
    for i, (row, job) in enumerate(zip(rows, jobs)):
        composer.add(i, row, job)
    composer.finish()
    assert [row["message"] for row in rows] == compose_messages(jobs)


def _count_composed(monkeypatch) -> list[int]:
    """Replies the workers composed, per batch (a list filled as batches finish)."""
    composed: list[int] = []
    real_finish = Composer.finish

    def counting_finish(self: Composer) -> None:
        composed.append(sum(len(rows) for rows, _j, _f in self.sent) + len(self.rows))
        real_finish(self)

    monkeypatch.setattr(Composer, "finish", counting_finish)
    return composed


def test_a_burst_decided_with_workers_answers_everyone_in_order(
        tmp_path, imap_user, smtp_sink, monkeypatch, executor) -> None:
    # Every batch counts as a burst here: the replies come from the workers, and go out
    # in arrival order as usual.
    monkeypatch.setattr(offload, "OFFLOAD_MIN", 1)
    finished = _count_composed(monkeypatch)
    bot = _bot(tmp_path, imap_user, smtp_sink, requests=20, codes=18)
    assert bot.run_once() == 0
    assert finished and sum(finished) >= 20
    got = {m.rcpt_tos[0]: m.message["X-Mailbot-Outcome"] for m in smtp_sink.wait_for(20)}
    assert [got[f"w{i}@patron.test"] for i in range(20)] == ["issued"] * 18 + \
        ["pool_exhausted"] * 2


def test_in_a_burst_even_a_small_batch_is_composed_by_the_workers(
        tmp_path, imap_user, smtp_sink, monkeypatch, executor) -> None:
    # A consortium's opening: many requests wait in all, a few per library. Batches of
    # 8 here, far below a full batch (OFFLOAD_MIN), but 20 wait: a burst.
    import mailbot.decide.sizes as sizes

    monkeypatch.setattr(sizes, "BATCH_SIZE", 8)
    composed = _count_composed(monkeypatch)
    bot = _bot(tmp_path, imap_user, smtp_sink, requests=20, codes=20)
    assert bot.run_once() == 0
    assert sum(composed) == 20 and max(composed) <= 8
    assert len(smtp_sink.wait_for(20)) == 20


def test_a_reply_the_workers_could_not_compose_sets_its_request_aside(
        tmp_path, imap_user, smtp_sink, monkeypatch, executor) -> None:
    monkeypatch.setattr(offload, "OFFLOAD_MIN", 1)
    real_finish = Composer.finish
    failed_once: list[int] = []

    def failing_finish(self: Composer) -> None:
        keys = [key for key, _row in self.rows] + [k for rows, _j, _f in self.sent
                                                    for k, _r in rows]
        if not failed_once:
            failed_once.append(keys[2])
            raise ComposeFailed(keys[2], "Traceback: the template broke")
        real_finish(self)

    monkeypatch.setattr(Composer, "finish", failing_finish)
    bot = _bot(tmp_path, imap_user, smtp_sink, requests=5, codes=5)
    bot.run_once()
    states = {r.id: (r.state, r.error) for r in bot.requests()}
    assert states[failed_once[0]][0] == "error"
    assert "the template broke" in (states[failed_once[0]][1] or "")
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.wait_for(4)) == [
        f"w{i}@patron.test" for i in (0, 1, 3, 4)]


def _processes_marked(mark: str) -> list[int]:
    """Processes whose environment carries ``mark`` (a run's children inherit it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # ended meanwhile, or not ours to read
    return found


def test_a_run_killed_in_a_burst_leaves_no_worker_or_sending_process_behind(
        tmp_path, imap_user, smtp_sink):
    # SIGKILL of `run --once` in the middle of a burst: its worker processes and its
    # sending process are children of the fork server, not of the run, and nothing else
    # would end them. They notice the run is gone and end (the sender after one last
    # round of what was decided), and the fork server with them.
    bot = _bot(tmp_path, imap_user, smtp_sink, requests=800, codes=800)
    mark = f"MAILBOT_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}
    run = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(bot.config),
                            "run", "--once"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not smtp_sink.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    children = [pid for pid in _processes_marked(mark) if pid != run.pid]
    run.kill()
    run.wait()
    assert children, "the burst started no worker or sending process"
    deadline = time.monotonic() + 30
    while _processes_marked(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_marked(mark) == []
