"""Real mail servers for the test suite: a private Dovecot IMAP instance and an SMTP sink.

Nothing here is mocked. ``Dovecot`` runs its own ``dovecot -F`` master with its own
configuration, sockets, state and Maildirs in a temporary directory, listening on
127.0.0.1 on a free port, so it never clashes with a system Dovecot or with another
test run. ``SmtpSink`` is an ``aiosmtpd`` server that records every message it accepts
and can be told to answer with an SMTP error instead.

Mailbox naming on the test Dovecot: the hierarchy separator is ``/`` (see
``SEPARATOR``), there is no namespace prefix, and the Maildirs use ``LAYOUT=fs``, so a
subfolder is named like ``mailbot/manual`` and folder names may contain dots. Only
INBOX exists in a new mailbox; every other folder must be created.

TLS: ``Dovecot(tls=pki)`` (a ``tests.pki.Pki``) turns on ``ssl = yes`` (or ``ssl_mode=
"required"``: no login at all without TLS) with an IMAPS listener on ``imaps_port`` and
STARTTLS on the plain port; ``SmtpSink(tls=pki)`` offers STARTTLS (``require_starttls``
refuses mail and AUTH before it) and ``SmtpSink(tls=pki, implicit_tls=True)`` speaks SMTPS.
The test helpers below (``append``, ``list_folder`` ...) use STARTTLS with the server's CA
when the server has one.

This module does not import pytest; ``tests/conftest.py`` wraps it in fixtures.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import grp
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from tests.pki import Pki

DOVECOT_BIN = "/usr/sbin/dovecot"
DOVECOT_PACKAGE = "dovecot-imapd"
SEPARATOR = "/"
LOCALHOST = "127.0.0.1"

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 15.0


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- Dovecot


class DovecotError(RuntimeError):
    """Dovecot could not be installed, started or stopped."""


_install_lock = threading.Lock()


def ensure_dovecot() -> str:
    """Make sure the Dovecot IMAP server is installed; return the path of its binary.

    Installs the Debian package ``dovecot-imapd`` when the binary is missing. Tests that
    need a server must fail loudly rather than skip, so every problem raises.
    """
    with _install_lock:
        if os.access(DOVECOT_BIN, os.X_OK):
            return DOVECOT_BIN
        if shutil.which("apt-get") is None:
            raise DovecotError(
                f"{DOVECOT_BIN} is missing and apt-get is not available: "
                f"install the {DOVECOT_PACKAGE} package (Dovecot 2.3) by hand"
            )
        if os.geteuid() != 0:
            raise DovecotError(
                f"{DOVECOT_BIN} is missing: run `sudo apt-get install {DOVECOT_PACKAGE}` "
                "or run the tests through scripts/test as root"
            )
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        # Wait for a concurrent apt/dpkg run instead of failing on its lock.
        lock_wait = ["-o", "DPkg::Lock::Timeout=600"]
        steps = [
            ["apt-get", *lock_wait, "update", "-qq"],
            ["apt-get", *lock_wait, "install", "-y", "-qq", "--no-install-recommends",
             DOVECOT_PACKAGE],
        ]
        for cmd in steps:
            result = subprocess.run(
                cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
            )
            if result.returncode != 0:
                raise DovecotError(
                    f"installing {DOVECOT_PACKAGE} failed: `{' '.join(cmd)}` exited with "
                    f"{result.returncode}\n{_tail(result.stdout + result.stderr)}"
                )
        if not os.access(DOVECOT_BIN, os.X_OK):
            raise DovecotError(f"{DOVECOT_PACKAGE} was installed but {DOVECOT_BIN} is missing")
        return DOVECOT_BIN


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


_NAME_RE = re.compile(r"^[A-Za-z0-9_+@-][A-Za-z0-9._+@-]*$")
_instances = itertools.count(1)


class Dovecot:
    """One private Dovecot IMAP server on 127.0.0.1, with its files in a temp directory.

    Each user has its own one-line passwd-file (plaintext password): Dovecot re-reads a
    passwd-file at most once a second but opens a file it has not seen before at once,
    so ``add_user`` works before or after ``start`` and the new user can log in
    immediately (changing an existing user's password takes up to a second). All mail
    is owned by one unprivileged user (``nobody`` when running as root) because Dovecot
    refuses to run mail processes as root. ``restart`` keeps the port and the mail.
    Failed logins are answered in about 0.5 s: no failure delay, no anvil penalty.

    With ``tls`` (a ``tests.pki.Pki``) the server presents that certificate: implicit TLS
    (IMAPS) on ``imaps_port`` and STARTTLS on ``port``; ``ssl_mode`` is Dovecot's ``ssl``
    setting, ``"yes"`` or ``"required"``. Beware: Dovecot counts a connection whose remote
    and local address are equal (127.0.0.1 to 127.0.0.1) as secure, so even ``required``
    lets a loopback client log in without TLS. To see whether a login used TLS, read its
    ``Login:`` line in the log: ``TLS`` there, ``secured`` for a plaintext loopback login
    (``login_lines``).
    Without ``tls`` there is no TLS at all (``ssl = no``: no STARTTLS capability).

    With ``oauth2`` (anything with ``introspection_url`` and ``ca_file``, such as
    ``tests.identity.IdentityProvider``) the server also takes AUTHENTICATE XOAUTH2 and
    OAUTHBEARER: an ``oauth2`` passdb POSTs each token to that introspection endpoint
    (over TLS, trusting ``ca_file``) and lets the user in when the answer is active and
    its ``username`` is the user. Passwords keep working as before (PLAIN and LOGIN);
    the passwd-file passdb sees a token first and logs a harmless ``Password mismatch``.
    """

    SSL_MODES = ("yes", "required")

    def __init__(self, *, port: int | None = None, root: str | os.PathLike[str] | None = None,
                 tls: Pki | None = None, ssl_mode: str = "yes",
                 imaps_port: int | None = None, oauth2: Any = None):
        if ssl_mode not in self.SSL_MODES:
            raise ValueError(f"ssl_mode must be one of {self.SSL_MODES}, not {ssl_mode!r}")
        self.host = LOCALHOST
        self._port_fixed = port is not None
        self.port = port if port is not None else free_port()
        self.tls = tls
        self.ssl_mode = ssl_mode
        self.oauth2 = oauth2
        self._imaps_fixed = imaps_port is not None
        self.imaps_port: int | None = None
        if tls is not None:
            self.imaps_port = imaps_port if imaps_port is not None else free_port()
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(
            tempfile.mkdtemp(prefix="mailbot-dovecot-")
        )
        self.config_path = self.root / "dovecot.conf"
        self.users_dir = self.root / "users"
        self.log_path = self.root / "dovecot.log"
        self.stderr_path = self.root / "dovecot.stderr"
        self.mail_root = self.root / "mail"
        self.home_root = self.root / "home"
        self._users: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False
        self._lock = threading.RLock()
        self._instance = f"mailbot-test-{os.getpid()}-{next(_instances)}"
        self._prepare_tree()

    @property
    def ca_file(self) -> Path | None:
        """The CA that signed the server certificate (None: the server has no TLS)."""
        return self.tls.ca_file if self.tls is not None else None

    # -- files

    def _mail_owner(self) -> tuple[int, int, str]:
        """The uid, gid and user name the mail processes run as."""
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("nobody")
                gid = user.pw_gid
                try:
                    gid = grp.getgrnam("nogroup").gr_gid
                except KeyError:
                    pass
                return user.pw_uid, gid, user.pw_name
            except KeyError:
                user = pwd.getpwnam("dovenull")
                return user.pw_uid, user.pw_gid, user.pw_name
        user = pwd.getpwuid(os.geteuid())
        return user.pw_uid, os.getegid(), user.pw_name

    def _prepare_tree(self) -> None:
        uid, gid, _ = self._mail_owner()
        # The login, auth and mail processes run as other users and must reach their files.
        os.chmod(self.root, 0o755)
        for path in (self.mail_root, self.home_root):
            path.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                os.chown(path, uid, gid)
        (self.root / "state").mkdir(exist_ok=True)
        self.users_dir.mkdir(exist_ok=True)

    def _write_passwd(self, name: str, password: str) -> None:
        path = self.users_dir / name
        tmp = self.users_dir / f".{name}.tmp"
        tmp.write_text(f"{name}:{{PLAIN}}{password}\n", encoding="utf-8")
        os.chmod(tmp, 0o644)
        # Atomic swap, so the auth process never reads a half-written file.
        os.replace(tmp, path)

    def _config_text(self) -> str:
        uid, gid, user_name = self._mail_owner()
        root = self.root
        as_root = os.geteuid() == 0
        debug = "yes" if os.environ.get("MAILBOT_DOVECOT_DEBUG") else "no"
        if as_root:
            # Debian's dovecot-core creates these users; the defaults name them anyway.
            service_users = ""
            login_chroot = ""
        else:
            # Unprivileged run: every process is this user and nothing can chroot.
            service_users = (
                f"default_internal_user = {user_name}\n"
                f"default_login_user = {user_name}\n"
                f"default_internal_group = {grp.getgrgid(gid).gr_name}\n"
                "service anvil {\n  chroot =\n}\n"
            )
            login_chroot = "  chroot =\n"
        if self.tls is None:
            ssl_settings = "ssl = no"
            imaps = "  inet_listener imaps {\n    port = 0\n  }"
        else:
            ssl_settings = (
                f"ssl = {self.ssl_mode}\n"
                f"ssl_cert = <{self.tls.cert_file}\n"
                f"ssl_key = <{self.tls.key_file}\n"
                "ssl_min_protocol = TLSv1.2"
            )
            imaps = (
                "  inet_listener imaps {\n"
                f"    address = {self.host}\n"
                f"    port = {self.imaps_port}\n"
                "    ssl = yes\n"
                "  }"
            )
        oauth2_mechanisms = oauth2_passdb = ""
        if self.oauth2 is not None:
            oauth2_mechanisms = " xoauth2 oauthbearer"
            oauth2_passdb = self._oauth2_passdb()
        return f"""\
# Generated by tests/servers.py for one test Dovecot instance.
protocols = imap
listen = {self.host}
instance_name = {self._instance}
base_dir = {root}/run
state_dir = {root}/state
log_path = {self.log_path}
{service_users}
{ssl_settings}
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth2_mechanisms}
auth_verbose = yes
auth_debug = {debug}
mail_debug = {debug}
login_trusted_networks = 127.0.0.0/8
# Wrong-password tests should not wait: no failure delay, no growing anvil penalty.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

# Mail processes must not run as root; they run as {user_name}.
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{self.mail_root}/%u:LAYOUT=fs
mail_fsync = never

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_dir}/%u
}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.home_root}/%u
}}

namespace inbox {{
  inbox = yes
  separator = {SEPARATOR}
  prefix =
}}

service imap-login {{
{login_chroot}  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
{imaps}
}}
"""

    def _oauth2_passdb(self) -> str:
        """The oauth2 passdb and its file: tokens checked by RFC 7662 introspection."""
        args = self.root / "oauth2.conf.ext"
        # The auth process runs as another user: a copy it can read (tests' temp
        # directories are private to root).
        ca_file = self.root / "oauth2-ca.pem"
        shutil.copyfile(self.oauth2.ca_file, ca_file)
        os.chmod(ca_file, 0o644)
        args.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self.oauth2.introspection_url}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
            f"tls_ca_cert_file = {ca_file}\n", encoding="utf-8")
        os.chmod(args, 0o644)
        return (f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {args}\n}}\n")

    # -- users

    def add_user(self, name: str, password: str) -> None:
        """Create (or change the password of) an IMAP user; works while running."""
        if not _NAME_RE.match(name):
            raise ValueError(f"unsupported IMAP user name for the test server: {name!r}")
        if any(c in password for c in ":\r\n"):
            raise ValueError("test passwords may not contain ':' or line breaks")
        with self._lock:
            self._users[name] = password
            self._write_passwd(name, password)

    @property
    def users(self) -> dict[str, str]:
        return dict(self._users)

    def maildir(self, user: str) -> Path:
        """The Maildir of ``user`` (INBOX; subfolders are subdirectories, LAYOUT=fs)."""
        return self.mail_root / user

    # -- process

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Dovecot:
        """Start the server and return once it greets IMAP clients with ``* OK``
        (on the plain port, and over TLS on the IMAPS port when it has one)."""
        with self._lock:
            if self.running:
                return self
            ensure_dovecot()
            attempts = 1 if (self._port_fixed or self._started_once) else 3
            for attempt in range(attempts):
                try:
                    self._start_once()
                    break
                except DovecotError:
                    # free_port() is racy: someone may have taken the port meanwhile.
                    if attempt + 1 < attempts and "in use" in self.log_tail():
                        self.port = free_port()
                        if self.tls is not None and not self._imaps_fixed:
                            self.imaps_port = free_port()
                        continue
                    raise
            self._started_once = True
            return self

    def _start_once(self) -> None:
        self.config_path.write_text(self._config_text(), encoding="utf-8")
        with open(self.stderr_path, "ab") as err:
            self._proc = subprocess.Popen(
                [ensure_dovecot(), "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        waiting = [(self.port, False)]
        if self.tls is not None:
            assert self.imaps_port is not None
            waiting.append((self.imaps_port, True))
        last_error: Exception | None = None
        while waiting and time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise DovecotError(self._describe(f"dovecot exited with code {code} on start"))
            port, implicit_tls = waiting[0]
            try:
                greeting = self._greeting(port, implicit_tls)
                if greeting.startswith(b"* OK"):
                    waiting.pop(0)
                    continue
                last_error = DovecotError(f"unexpected greeting {greeting!r} on port {port}")
            except OSError as exc:  # ssl.SSLError is an OSError too
                last_error = exc
            time.sleep(0.05)
        if not waiting:
            return
        self._kill()
        raise DovecotError(
            self._describe(f"dovecot did not greet on port {waiting[0][0]} in time "
                           f"({last_error})")
        )

    def _greeting(self, port: int, implicit_tls: bool) -> bytes:
        """The first line the server sends on ``port`` (over verified TLS if asked)."""
        with socket.create_connection((self.host, port), timeout=2) as raw:
            if not implicit_tls:
                return raw.makefile("rb").readline()
            assert self.tls is not None
            context = ssl.create_default_context(cafile=str(self.tls.ca_file))
            with context.wrap_socket(raw, server_hostname=self.host) as sock:
                return sock.makefile("rb").readline()

    def stop(self) -> None:
        """Stop the server (clients are disconnected); the mail stays on disk."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self._kill()
            self._kill_group(proc.pid)
            self._proc = None

    def restart(self) -> Dovecot:
        """Stop and start again on the same port with the same users and mail."""
        self.stop()
        return self.start()

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._kill_group(proc.pid)
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self._proc = None

    @staticmethod
    def _kill_group(pgid: int) -> None:
        # Leftover children (imap, auth) of a dead master would hold files and sockets.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def cleanup(self) -> None:
        """Stop the server and delete its directory (kept if MAILBOT_KEEP_SERVERS is set)."""
        self.stop()
        if self._own_root and not os.environ.get("MAILBOT_KEEP_SERVERS"):
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- diagnostics

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.stderr_path, self.log_path):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace")
                if text.strip():
                    parts.append(f"--- {path.name}\n{_tail(text, lines)}")
        return "\n".join(parts) or "(dovecot wrote no log)"

    def login_lines(self, user: str) -> list[str]:
        """The log's ``imap-login`` lines (successful and failed logins) naming ``user``."""
        if not self.log_path.exists():
            return []
        needle = f"user=<{user}>"
        return [line for line in self.log_path.read_text(encoding="utf-8", errors="replace")
                .splitlines() if "imap-login:" in line and needle in line]

    def _describe(self, what: str) -> str:
        return f"{what}\nconfig: {self.config_path}\n{self.log_tail()}"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        tls = f" imaps={self.imaps_port} ssl={self.ssl_mode}" if self.tls is not None else ""
        return f"<Dovecot {self.host}:{self.port}{tls} {state} root={self.root}>"


# --------------------------------------------------------------------------- IMAP helpers


class StoredMessage(NamedTuple):
    """One message as the IMAP server holds it."""

    uid: int
    internaldate: datetime  # timezone-aware
    flags: tuple[str, ...]
    raw: bytes


def _flag_text(flag: bytes | str) -> str:
    return flag.decode("ascii") if isinstance(flag, bytes) else flag


@contextmanager
def imap_connect(server: Any, user: str, password: str) -> Iterator[Any]:
    """A logged-in ``IMAPClient`` for ``server`` (anything with ``host`` and ``port``).

    ``normalise_times`` is off, so dates come back timezone-aware. When ``server`` has a
    ``ca_file`` (a TLS ``Dovecot``), the connection is upgraded with STARTTLS first.
    """
    from imapclient import IMAPClient

    client = IMAPClient(server.host, server.port, ssl=False, timeout=30)
    client.normalise_times = False
    try:
        ca_file = getattr(server, "ca_file", None)
        if ca_file is not None:
            client.starttls(ssl.create_default_context(cafile=str(ca_file)))
        client.login(user, password)
        yield client
    finally:
        try:
            client.logout()
        except Exception:
            client.shutdown()


_APPENDUID_RE = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


def append(
    server: Any,
    user: str,
    password: str,
    raw: bytes,
    *,
    folder: str = "INBOX",
    internaldate: datetime,
    flags: Iterable[str] = (),
) -> int | None:
    """APPEND ``raw`` to ``folder`` with exactly this INTERNALDATE; return its UID.

    ``internaldate`` must be timezone-aware; IMAP keeps whole seconds only.
    """
    if internaldate.tzinfo is None or internaldate.utcoffset() is None:
        raise ValueError("internaldate must be a timezone-aware datetime")
    with imap_connect(server, user, password) as client:
        response = client.append(folder, raw, flags=tuple(flags), msg_time=internaldate)
    match = _APPENDUID_RE.search(response or b"")
    return int(match.group(1)) if match else None


def list_folder(
    server: Any, user: str, password: str, folder: str = "INBOX"
) -> list[StoredMessage]:
    """Every message in ``folder``, by UID, without changing any flag."""
    with imap_connect(server, user, password) as client:
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        if not uids:
            return []
        data = client.fetch(uids, ["INTERNALDATE", "FLAGS", "BODY.PEEK[]"])
    return [
        StoredMessage(
            uid=uid,
            internaldate=item[b"INTERNALDATE"],
            # \\Recent belongs to one IMAP session, not to the message.
            flags=tuple(t for t in map(_flag_text, item[b"FLAGS"]) if t != "\\Recent"),
            raw=item[b"BODY[]"],
        )
        for uid, item in sorted(data.items())
    ]


def create_folder(server: Any, user: str, password: str, folder: str) -> None:
    """Create ``folder`` (use ``/`` between levels, e.g. ``mailbot/manual``)."""
    with imap_connect(server, user, password) as client:
        client.create_folder(folder)


def list_folders(server: Any, user: str, password: str) -> list[str]:
    """Names of all the user's folders, sorted."""
    with imap_connect(server, user, password) as client:
        return sorted(name for _flags, _sep, name in client.list_folders())


@dataclass
class ImapUser:
    """One mailbox on a test Dovecot, with shortcuts for the helpers above."""

    name: str
    password: str
    server: Dovecot

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def maildir(self) -> Path:
        return self.server.maildir(self.name)

    def append(
        self,
        raw: bytes,
        *,
        internaldate: datetime | None = None,
        folder: str = "INBOX",
        flags: Iterable[str] = (),
    ) -> int | None:
        """APPEND ``raw``; INTERNALDATE defaults to now. Returns the new UID."""
        when = internaldate if internaldate is not None else datetime.now(timezone.utc)
        return append(
            self.server, self.name, self.password, raw,
            folder=folder, internaldate=when, flags=flags,
        )

    def list(self, folder: str = "INBOX") -> list[StoredMessage]:
        return list_folder(self.server, self.name, self.password, folder)

    def create_folder(self, folder: str) -> None:
        create_folder(self.server, self.name, self.password, folder)

    def folders(self) -> list[str]:
        return list_folders(self.server, self.name, self.password)

    def connect(self):  # noqa: ANN201 - a context manager yielding IMAPClient
        """``with user.connect() as client:`` a logged-in IMAPClient."""
        return imap_connect(self.server, self.name, self.password)


# --------------------------------------------------------------------------- SMTP sink


@dataclass(frozen=True)
class ReceivedMail:
    """One message the sink accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    received_at: datetime
    auth_login: str | None = None
    tls: bool = False  # the message came over TLS (SMTPS or after STARTTLS)
    mail_options: tuple[str, ...] = ()  # MAIL FROM's parameters (SIZE=…)


@dataclass(frozen=True)
class SmtpLogin:
    """One AUTH attempt the sink answered."""

    login: str | None
    success: bool
    tls: bool  # the attempt was made over TLS


@dataclass
class _Failure:
    code: int
    text: str
    stage: str
    remaining: int | None  # None: until stop_failing()


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every accepted message.

    ``fail_with(code, text, count=N, stage=...)`` makes the next N MAIL, RCPT or DATA
    commands (default: DATA, i.e. whole messages) answer with that error; a 421 also
    closes the connection, as a real server going away would. With ``auth=(user,
    password)`` the sink offers AUTH PLAIN/LOGIN and requires it; every attempt is kept in
    ``logins``.

    TLS: with ``tls`` (a ``tests.pki.Pki``) the sink offers STARTTLS and, when ``auth`` is
    set, AUTH only after it; ``require_starttls=True`` also refuses MAIL before STARTTLS.
    ``implicit_tls=True`` speaks TLS from the first byte instead (SMTPS), no STARTTLS.
    Without ``tls``, no TLS at all and AUTH is offered in the clear.

    ``data_delay``: seconds each message takes to be accepted after its data (a slow
    relay), 0 by default; ``clear()`` sets it back.

    ``smtputf8=False``: a relay that does not offer SMTPUTF8 (RFC 6531) and reads only ASCII
    commands, as many still do.
    """

    STAGES = ("MAIL", "RCPT", "DATA")

    def __init__(
        self,
        *,
        port: int | None = None,
        auth: tuple[str, str] | None = None,
        hostname: str = "sink.mailbot.test",
        tls: Pki | None = None,
        implicit_tls: bool = False,
        require_starttls: bool = False,
        smtputf8: bool = True,
    ):
        if tls is None and (implicit_tls or require_starttls):
            raise ValueError("implicit_tls and require_starttls need tls=<Pki>")
        if implicit_tls and require_starttls:
            raise ValueError("implicit_tls and require_starttls exclude each other")
        self.host = LOCALHOST
        self._port_fixed = port is not None
        self.port = port if port is not None else free_port()
        self.auth = auth
        self.hostname = hostname
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.require_starttls = require_starttls
        self.smtputf8 = smtputf8
        self._messages: list[ReceivedMail] = []
        self._logins: list[SmtpLogin] = []
        self._failure: _Failure | None = None
        self.data_delay = 0.0
        self._cond = threading.Condition()
        self._controller: Any = None

    # -- control

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        if self._controller is not None:
            return self
        attempts = 1 if self._port_fixed else 3
        for attempt in range(attempts):
            kwargs: dict[str, Any] = dict(
                hostname=self.host,
                port=self.port,
                server_hostname=self.hostname,
                enable_SMTPUTF8=self.smtputf8,
                ready_timeout=10.0,
            )
            if self.tls is not None and self.implicit_tls:
                kwargs["ssl_context"] = self.tls.server_context()
            elif self.tls is not None:
                kwargs.update(tls_context=self.tls.server_context(),
                              require_starttls=self.require_starttls)
            if self.auth is not None:
                kwargs.update(
                    authenticator=self._authenticate,
                    auth_required=True,
                    # aiosmtpd cannot tell that an SMTPS connection is encrypted: it only
                    # counts STARTTLS, so SMTPS (and no TLS at all) must allow AUTH as is.
                    auth_require_tls=self.tls is not None and not self.implicit_tls,
                )
            controller = Controller(_SinkHandler(self), **kwargs)
            try:
                controller.start()
            except Exception:
                if attempt + 1 < attempts:
                    self.port = free_port()
                    continue
                raise
            self._controller = controller
            break
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- recorded mail

    @property
    def messages(self) -> list[ReceivedMail]:
        """A snapshot of the accepted messages, oldest first."""
        with self._cond:
            return list(self._messages)

    @property
    def logins(self) -> list[SmtpLogin]:
        """Every AUTH attempt so far (successful or not), oldest first."""
        with self._cond:
            return list(self._logins)

    @property
    def ca_file(self) -> Path | None:
        """The CA that signed the sink's certificate (None: the sink has no TLS)."""
        return self.tls.ca_file if self.tls is not None else None

    def clear(self) -> None:
        """Forget recorded messages, logins and any pending failure."""
        with self._cond:
            self._messages.clear()
            self._logins.clear()
            self._failure = None
            self.data_delay = 0.0

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        """Block until at least ``count`` messages arrived; raise TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"SMTP sink got {len(self._messages)} message(s), expected {count}"
                )
            return list(self._messages)

    # -- failures

    def fail_with(
        self, code: int, text: str = "Try again later", *, count: int | None = None,
        stage: str = "DATA",
    ) -> None:
        """Answer the next ``count`` ``stage`` commands with ``code text`` (None: forever)."""
        stage = stage.upper()
        if stage not in self.STAGES:
            raise ValueError(f"stage must be one of {self.STAGES}, not {stage!r}")
        if not 400 <= code <= 599:
            raise ValueError(f"SMTP error codes are 4xx or 5xx, not {code}")
        if count is not None and count < 1:
            raise ValueError("count must be positive or None")
        with self._cond:
            self._failure = _Failure(code, text, stage, count)

    def stop_failing(self) -> None:
        with self._cond:
            self._failure = None

    def _take_failure(self, stage: str) -> _Failure | None:
        with self._cond:
            failure = self._failure
            if failure is None or failure.stage != stage:
                return None
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failure = None
            return failure

    def _record(self, mail: ReceivedMail) -> None:
        with self._cond:
            self._messages.append(mail)
            self._cond.notify_all()

    def _authenticate(self, server, session, envelope, mechanism, auth_data):  # noqa: ANN001
        from aiosmtpd.smtp import AuthResult, LoginPassword

        assert self.auth is not None
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode("utf-8", "replace") == self.auth[0]
            and auth_data.password.decode("utf-8", "replace") == self.auth[1]
        )
        login = auth_data.login.decode("utf-8", "replace") \
            if isinstance(auth_data, LoginPassword) else None
        with self._cond:
            self._logins.append(SmtpLogin(login, ok, _over_tls(server)))
        # A refusal is left to aiosmtpd to answer (535): with its default handled=True it
        # would send nothing, and the client would wait for its timeout.
        return AuthResult(success=ok, auth_data=auth_data if ok else None, handled=ok)

    def __repr__(self) -> str:
        tls = "" if self.tls is None else (" smtps" if self.implicit_tls else " starttls")
        return f"<SmtpSink {self.host}:{self.port}{tls} messages={len(self._messages)}>"


def _over_tls(server: Any) -> bool:
    """Whether this aiosmtpd connection is encrypted (SMTPS or after STARTTLS)."""
    transport = getattr(server, "transport", None)
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class _SinkHandler:
    """aiosmtpd hooks: apply a pending failure, otherwise accept and record."""

    def __init__(self, sink: SmtpSink):
        self.sink = sink

    def _reject(self, server: Any, failure: _Failure) -> str:
        if failure.code == 421:
            # Close right after aiosmtpd has written the reply (same loop step).
            transport = server.transport
            asyncio.get_running_loop().call_soon(lambda: transport and transport.close())
        return f"{failure.code} {failure.text}"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001
        failure = self.sink._take_failure("MAIL")
        if failure is not None:
            return self._reject(server, failure)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        failure = self.sink._take_failure("RCPT")
        if failure is not None:
            return self._reject(server, failure)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        failure = self.sink._take_failure("DATA")
        if failure is not None:
            return self._reject(server, failure)
        if self.sink.data_delay:
            await asyncio.sleep(self.sink.data_delay)
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        # auth_data (aiosmtpd >= 1.3) holds what the authenticator returned; login_data is
        # deprecated and logs a warning on every access.
        auth = getattr(session, "auth_data", None)
        login = getattr(auth, "login", auth) if session.authenticated else None
        self.sink._record(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                message=email.message_from_bytes(raw, policy=email.policy.default),
                received_at=datetime.now(timezone.utc),
                auth_login=login.decode("utf-8", "replace") if isinstance(login, bytes) else login,
                tls=_over_tls(server),
                mail_options=tuple(envelope.mail_options),
            )
        )
        return "250 Message accepted for delivery"
