"""The opening burst, measured against the mail servers' own limit (issue 7).

Starts a private Dovecot and, as the library's relay, Postfix's smtp-sink (Debian package
`postfix`), delivers N request mails (one library, a pool of N codes, N valid readers) and
measures in one run:

  (a) the physical floor: a raw IMAP fetch of the N mails (as many mailboxes at once as
      the bot reads), plus Postfix's smtp-source pushing N messages of the bot's median
      reply size (measured from the replies it wrote in (c)) into the same sink over as
      many sessions as the bot opens (smtp.connections, default 2);
  (b) a naive loop: the same fetch, plus a plain Python loop building each reply with
      email.message.EmailMessage and sending it with aiosmtplib over one connection —
      no logic at all;
  (c) `mailbot run --once` on the N mails (a separate process; its peak RSS is read from
      /proc, VmHWM).

    .venv/bin/python benchmarks/burst.py [-n 10000] [--db sqlite|postgresql]
    .venv/bin/python benchmarks/burst.py --consortium     # 200 libraries x 2 mailboxes

Mail is delivered by writing Maildir files (INTERNALDATE = file time), which is what a
local delivery agent does; Dovecot indexes them before any phase is timed. The libraries
run the default policy (every check on). The bot prints the time of its stages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402
from imapclient import IMAPClient  # noqa: E402

from mailbot.config import SmtpSettings  # noqa: E402
from tests.botenv import READER_HEADER, request_mail  # noqa: E402
from tests.servers import Dovecot, free_port  # noqa: E402

SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"


def ensure_postfix() -> None:
    if not (os.path.exists(SINK) and os.path.exists(SOURCE)):
        # As scripts/test installs it: "No configuration", no mail server set up or started.
        subprocess.run(["debconf-set-selections"], check=True, text=True,
                       input="postfix postfix/main_mailer_type select No configuration\n")
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "postfix"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def deliver(maildir: Path, mails: list[bytes], start: float) -> None:
    new = maildir / "new"
    new.mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(mails):
        path = new / f"{int(start) + i}.M{i}P1.bench"
        path.write_bytes(raw)
        t = start + i * 0.01  # 100 mails a second: distinct INTERNALDATEs
        os.utime(path, (t, t))


def imap_fetch_all(host: str, port: int, user: str, password: str) -> list[bytes]:
    client = IMAPClient(host, port=port, ssl=False, timeout=120)
    client.login(user, password)
    client.select_folder("INBOX", readonly=True)
    uids = client.search(["ALL"])
    raws = []
    for i in range(0, len(uids), 500):
        for _uid, data in client.fetch(uids[i:i + 500], ["BODY.PEEK[]"]).items():
            raws.append(data[b"BODY[]"])
    client.logout()
    return raws


def fetch_every_mailbox(dovecot: Dovecot, users: list[tuple[str, str, str]]) -> list[bytes]:
    """The raw fetch of every mailbox, as many at once as the bot reads (POLL_WORKERS),
    so that a consortium's floor is not a mailbox-by-mailbox one."""
    from concurrent.futures import ThreadPoolExecutor

    from mailbot.intake.poll import POLL_WORKERS

    with ThreadPoolExecutor(max_workers=min(POLL_WORKERS, len(users))) as pool:
        parts = pool.map(lambda u: imap_fetch_all(dovecot.host, dovecot.port, u[1], u[2]),
                         users)
        return [raw for part in parts for raw in part]


async def naive_send(raws: list[bytes], port: int) -> None:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await smtp.connect()
    for i, _raw in enumerate(raws):
        msg = EmailMessage()
        msg["From"] = "ebooki@biblioteka.test"
        msg["To"] = f"p{i}@patron.test"
        msg["Subject"] = "Re: LEGIMI"
        msg.set_content("Dzień dobry,\nto jest kod.\n")
        await smtp.send_message(msg)
    await smtp.quit()


def start_sink(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([SINK, "-u", "root", f"127.0.0.1:{port}", "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc


def write_config(tmp: Path, *, db: str, dovecot: Dovecot, users: list[tuple[str, str, str]],
                 sink_port: int, libraries: list[str]) -> Path:
    # The default policy: every check a library would have on is on.
    libs = "".join(f'\n[[libraries]]\nid = "{lib}"\nname = "Biblioteka {lib}"\n'
                   for lib in libraries)
    mbs = "".join(f"""
[[mailboxes]]
library = "{lib}"
address = "ebooki-{user}@biblioteka.test"
type = "imap"
host = "{dovecot.host}"
port = {dovecot.port}
ssl = false
username = "{user}"
password = "{pw}"
""" for lib, user, pw in users)
    config = tmp / "mailbot.toml"
    config.write_text(f'database_url = "{db}"\n[smtp]\nhost = "127.0.0.1"\nport = {sink_port}'
                      f"\n[web]\nenabled = false\n{libs}{mbs}", encoding="utf-8")
    return config


def median_reply_size(db: str) -> int:
    """The median size of the replies the bot wrote (multipart text + HTML, both languages)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db)
    with engine.connect() as conn:
        sizes = [len(m) for (m,) in conn.execute(text("SELECT message FROM outbox"))]
    engine.dispose()
    return int(statistics.median(sizes))


def run_bot(config: Path) -> tuple[float, int, float, int]:
    profile = os.environ.get("MAILBOT_BENCH_PROFILE")  # a file: cProfile the bot's run
    run = (f"import cProfile; cProfile.run('rc = main(sys.argv[1:])', {profile!r})"
           if profile else "rc = main(sys.argv[1:])")
    code = "\n".join([
        "import os, resource, sys, time",
        "from mailbot.cli import main",
        "t = time.perf_counter(); cpu = time.process_time()",
        run,
        "el = time.perf_counter() - t; cpu = time.process_time() - cpu",
        "def hwm(pid):",
        "    for line in open(f'/proc/{pid}/status'):",
        "        if line.startswith('VmHWM'): return int(line.split()[1])",
        "    return 0",
        # Its worker processes (the fork server and the pool, still alive now) and the
        # largest child that has ended (PostgreSQL's sending process) count too.
        "parent = {}",
        "for p in filter(str.isdigit, os.listdir('/proc')):",
        "    try: parent[int(p)] = int(open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1])",
        "    except OSError: pass",
        "family, grew = {os.getpid()}, True",
        "while grew:",
        "    more = {p for p, pp in parent.items() if pp in family} - family",
        "    family |= more; grew = bool(more)",
        "others = sum(hwm(p) for p in family - {os.getpid()} if p in parent)",
        "others += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss",
        "print('BENCH', el, hwm('self'), cpu, others); sys.exit(rc)",
    ])
    command = [sys.executable, "-c", code, "--config", str(config), "run", "--once"]
    sampled = os.environ.get("MAILBOT_BENCH_PYSPY")  # a file: py-spy samples the bot's run
    if sampled:  # (sampling barely slows the bot, unlike cProfile)
        command = [str(Path(sys.executable).with_name("py-spy")), "record", "-r", "200",
                   *os.environ.get("MAILBOT_BENCH_PYSPY_ARGS", "").split(),  # e.g. --idle
                   "-f", "raw", "-o", sampled, "--", *command]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if os.environ.get("MAILBOT_BENCH_LOG"):  # a file: the bot's own log of the run
        Path(os.environ["MAILBOT_BENCH_LOG"]).write_text(out.stderr)
    if out.returncode != 0:
        raise SystemExit(f"mailbot run --once failed:\n{out.stderr[-3000:]}")
    line = [x for x in out.stdout.splitlines() if x.startswith("BENCH")][-1].split()
    summary = [x for x in out.stdout.splitlines() if x.startswith("stored ")][-1]
    print("mailbot run --once:", summary)
    return float(line[1]), int(line[2]), float(line[3]), int(line[4])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000, help="request mails (and codes)")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--consortium", action="store_true",
                    help="200 libraries x 2 mailboxes, N spread over them")
    args = ap.parse_args()
    ensure_postfix()
    n = args.n
    with tempfile.TemporaryDirectory(prefix="mailbot-burst-") as tmpdir, Dovecot() as dovecot:
        tmp = Path(tmpdir)
        if args.consortium:
            libraries = [f"lib{k:03d}" for k in range(200)]
            users = [(lib, f"{lib}b{b}", "pw") for lib in libraries for b in (0, 1)]
        else:
            libraries = ["lib"]
            users = [("lib", "bench", "pw")]
        for _lib, user, pw in users:
            dovecot.add_user(user, pw)
        year = time.gmtime().tm_year
        per_user: dict[str, list[bytes]] = {u: [] for _l, u, _p in users}
        readers: dict[str, list[str]] = {lib: [] for lib in libraries}
        for i in range(n):
            lib, user, _pw = users[i % len(users)]
            card = f"7{i:07d}"
            readers[lib].append(f"{card};Ala;Burst{i};p{i}@patron.test;{year + 1}-12-31;0;0;"
                                f"{year}-01-15;{year}-02-01")
            raw, _ = request_mail(f"p{i}@patron.test", "LEGIMI", f"Ala Burst{i} {card}")
            per_user[user].append(raw)
        now = time.time()
        uid, gid, _name = dovecot._mail_owner()
        for user, mails in per_user.items():
            deliver(dovecot.maildir(user), mails, now - 3600)
            for path in [dovecot.maildir(user), *dovecot.maildir(user).rglob("*")]:
                os.chown(path, uid, gid)  # Dovecot reads mail as its mail user
        # Dovecot indexes the new files on first access: not part of any measurement.
        for _lib, user, pw in users:
            imap_fetch_all(dovecot.host, dovecot.port, user, pw)

        sink_port = free_port()
        sink = start_sink(sink_port)
        try:
            # (a) the physical floor, first half: the fetch (before the bot moves the mail)
            t, cpu = time.perf_counter(), time.process_time()
            raws = fetch_every_mailbox(dovecot, users)
            fetch_s = time.perf_counter() - t
            fetch_cpu = time.process_time() - cpu
            assert len(raws) == n, len(raws)

            # (b) the naive loop
            t, cpu = time.perf_counter(), time.process_time()
            raws = fetch_every_mailbox(dovecot, users)
            asyncio.run(naive_send(raws, sink_port))
            naive = time.perf_counter() - t
            naive_cpu = time.process_time() - cpu

            # (c) the bot
            if args.db == "postgresql":
                from tests.databases import fresh_postgres
                db_ctx = fresh_postgres()
                db = db_ctx.__enter__()
            else:
                db_ctx = None
                db = f"sqlite:///{tmp}/bench.db"
            try:
                config = write_config(tmp, db=db, dovecot=dovecot, users=users,
                                      sink_port=sink_port, libraries=libraries)
                from mailbot.cli import main as cli

                month = time.strftime("%Y-%m")
                for lib in libraries:
                    rf = tmp / f"readers-{lib}.csv"
                    rf.write_text("\n".join([READER_HEADER, *readers[lib]]) + "\n")
                    cf = tmp / f"codes-{lib}.csv"
                    cf.write_text("kod\n" + "".join(f"BURST-{lib}-{i:07d}\n"
                                                    for i in range(len(readers[lib]))))
                    assert cli(["--config", str(config), "import-readers", str(rf),
                                "--library", lib]) == 0
                    assert cli(["--config", str(config), "import-codes", str(cf),
                                "--library", lib, "--service", "legimi",
                                "--month", month]) == 0
                bot, peak_kb, bot_cpu, others_kb = run_bot(config)
                reply_size = median_reply_size(db)
            finally:
                if db_ctx is not None:
                    db_ctx.__exit__(None, None, None)
            # (a) the physical floor, second half: replies of the size the bot really sent
            t, children = time.perf_counter(), _children_cpu()
            sessions = str(SmtpSettings().connections)
            subprocess.run([SOURCE, "-d", "-s", sessions, "-m", str(n), "-l", str(reply_size),
                            "-f", "ebooki@biblioteka.test", "-t", "p@patron.test",
                            f"127.0.0.1:{sink_port}"], check=True)
            source_s = time.perf_counter() - t
            source_cpu = _children_cpu() - children  # smtp-source's own
            physical = fetch_s + source_s
        finally:
            sink.terminate()
            sink.wait()

    label = "consortium 200 libraries x 2 mailboxes" if args.consortium else "one library"
    print(f"\nburst: N = {n}, {label}, database {args.db}")
    print(f"(a) physical floor: {physical:.2f} s  (IMAP fetch {fetch_s:.2f} s + "
          f"smtp-source {source_s:.2f} s, {reply_size} bytes a message, "
          f"{SmtpSettings().connections} sessions)")
    print(f"(b) naive loop:     {naive:.2f} s")
    print(f"(c) mailbot:        {bot:.2f} s  = {n / bot:.0f} requests/s, "
          f"{bot / n * 1000:.2f} ms per request")
    print(f"bot/physical = {bot / physical:.2f}   (goal <= 3)")
    print(f"bot/naive    = {bot / naive:.2f}   (goal < 1)")
    print(f"peak RSS of mailbot: {peak_kb / 1024:.0f} MB   (goal < 300 MB); its worker "
          f"processes {others_kb / 1024:.0f} MB more (sum of their peaks)")
    # CPU time (user + system, every thread) of the Python process doing (b) or (c): less
    # disturbed than wall time by other machines sharing this one, so a steadier view of
    # the Python work itself (the servers' CPU is not counted).
    print(f"CPU time: naive loop {naive_cpu:.2f} s, mailbot {bot_cpu:.2f} s "
          f"(bot/naive {bot_cpu / naive_cpu:.2f}); the floor's clients: fetch "
          f"{fetch_cpu:.2f} s, smtp-source {source_cpu:.2f} s")
    return 0


def _children_cpu() -> float:
    """User + system CPU of this process's children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    raise SystemExit(main())
