"""The settings: one frozen dataclass per table of the TOML file, each field with its type,
its default and its own rule (``mailbot.config.checks``).

They are plain dataclasses that pydantic fills from the file (``mailbot.config.load``):
made in code they cost what a dataclass costs, ``dataclasses.replace`` works, and they are
hashable (``lru_cache`` keys, e.g. ``decide.context.month_context``), comparable and picklable
(sent to worker processes) as before. Every key is documented in ``config.example.toml``
(a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from mailbot import penalty as penalties
from mailbot import services
from mailbot import validity as validities
from mailbot.config.checks import (
    CLOSED,
    HHMM,
    Address,
    Amount,
    AtLeastOne,
    Bool,
    Day,
    Float,
    Int,
    Languages,
    NotBlank,
    NotNegative,
    NotNegativeFloat,
    Positive,
    Regex,
    Str,
    TcpPort,
    TimeZone,
    TimeZoneOrEmpty,
    Window,
)
from mailbot.config.checks import After
from mailbot.config.mail import MailboxSettings, OAuthSettings, SmtpSettings
from mailbot.config.quotas import QuotaSettings
from mailbot.config.services import (
    AgesByService,
    ServiceIds,
    ServiceSettings,
    ServiceTexts,
    UrlsByService,
    catalogue,
)
from mailbot.config.sources import Sip2SourceSettings, SqlSourceSettings
from mailbot.errors import ConfigError
from mailbot.services import Catalogue

__all__ = ["MailboxSettings", "OAuthSettings", "QuotaSettings", "ServiceSettings",
           "ServiceTexts", "Sip2SourceSettings", "SmtpSettings", "SqlSourceSettings"]
# (mail.py's, quotas.py's, services.py's and sources.py's, re-exported)

# The shipped services (mailbot/services.py). A config's own, with what [[services]]
# adds: Settings.catalogue.
SERVICES = services.IDS
# The services a library offers (``services`` in its table): ids of the config's services
# (checked in mailbot.config.load, once every [[services]] table is read).
Services = ServiceIds
# ``penalty = { misses, within_months, block_months }``, or 0 / false (mailbot/penalty.py).
PenaltyRule = Annotated[Any, After(penalties.parse)]
# ``[libraries.validity]``: the validity sentence by month of issue (mailbot/validity.py).
ValidityTexts = Annotated[Any, After(validities.parse)]


@dataclass(frozen=True)
class DaemonSettings:
    """``mailbot run``: the long-running process."""

    # IMAP servers drop an IDLE after 30 minutes (RFC 2177 allows 29): re-issue before.
    idle_refresh: Float = 1500.0
    # Mailboxes whose server has no IDLE (and Maildirs) are polled this often, seconds.
    poll_interval: Float = 60.0
    # After a network or server error, reconnect after 1, 2, 4 … seconds, at most this.
    reconnect_max: Float = 300.0
    # Temporary SMTP failures are retried with growing pauses (at most send_backoff_max
    # seconds apart) for this long, then the reply is marked failed for staff.
    send_retry_for: Float = 172800.0
    send_backoff_max: Float = 1800.0
    # A mailbox that cannot be read (wrong password, server down) holds its library's
    # decisions this long, seconds; after that the library is decided without it, and its
    # mail, once read, is decided among what is still undecided (README, "A mailbox that
    # is down"). 0: wait for every mailbox however long it is down.
    mailbox_grace: NotNegativeFloat = 900.0
    # After an authentication failure (IMAP or SMTP) the next login waits this long,
    # seconds, doubling with each failure up to auth_retry_max: providers lock accounts
    # that keep trying a wrong secret.
    auth_retry: Positive = 300.0
    auth_retry_max: Positive = 3600.0
    # Scheduled jobs, library time zone.
    month_close_time: HHMM = "00:05"
    retention_time: HHMM = "03:30"

    __pydantic_config__ = CLOSED


@dataclass(frozen=True)
class WebSettings:
    """The staff dashboard, served by ``mailbot run`` (and ``mailbot demo``)."""

    enabled: Bool = True
    # Loopback by default: put a TLS-terminating proxy (nginx, Caddy) in front for the
    # branches; cookies are marked Secure whenever the request came over https.
    host: NotBlank = "127.0.0.1"
    port: TcpPort = 8080
    # Sessions are signed with a secret key: read from this environment variable, or else
    # from secret_key_file, which is generated (mode 0600) on first start. Default file:
    # web-secret.key in the SQLite database's folder (else beside the config file).
    secret_key_env: Str | None = None
    secret_key_file: Str | None = None
    session_hours: Positive = 12.0  # a login lasts this long
    # Failed logins: this many for one name from one client address within
    # lockout_minutes pause that name's logins from that address (HTTP 429) until
    # lockout_minutes after the last; the owner elsewhere can still log in. And this many
    # from one address, whatever the names, pause every login from it as long. And this
    # many for one name from all addresses together (a guesser with many addresses) pause
    # that name from every address it has not logged in from within a month: the owner's
    # own desks stay open.
    lockout_attempts: AtLeastOne = 5
    lockout_minutes: Positive = 15.0
    login_address_attempts: AtLeastOne = 20
    login_name_attempts: AtLeastOne = 50
    # The largest request body accepted (an import upload); larger ones get HTTP 413
    # before they are read. Other forms are capped at 1 MiB.
    max_upload_bytes: AtLeastOne = 20 * 1024 * 1024
    # Proxies whose X-Forwarded-Proto/For headers are believed (comma-separated IPs).
    forwarded_allow_ips: Str = "127.0.0.1"
    live_refresh_seconds: Positive = 5.0  # how often the queue page refreshes itself

    __pydantic_config__ = CLOSED


@dataclass(frozen=True)
class ImportSettings:
    """Bounds on one imported file (CLI and dashboard): a hostile or mistaken file is
    refused with an error naming the bound, before it can fill the daemon's memory."""

    # Rows below the header. A big city library's reader export (~200,000 patrons) and a
    # month's code pool (thousands) fit well within it.
    max_rows: AtLeastOne = 500_000
    # The file's size, and the size of an XLSX's parts once unpacked: a 200,000-reader
    # export is ~25 MB as CSV and ~100 MiB as unpacked XLSX.
    max_bytes: AtLeastOne = 256 * 1024 * 1024

    __pydantic_config__ = CLOSED


@dataclass(frozen=True)
class LibrarySettings:
    id: Str  # unique among the libraries
    name: Str
    timezone: TimeZoneOrEmpty | None = None  # defaults to the top-level timezone
    # The month's window opens on this day at this time (library time zone); with
    # window_working_day, on the first working day (no weekend, no Polish public holiday)
    # on or after that day.
    window_day: Day = 1
    window_time: HHMM = "00:00"
    window_working_day: Bool = False
    # Replies go out only inside this daily window ("HH:MM-HH:MM"), optionally on working
    # days only; order and allocation are still decided on arrival.
    send_window: Window | None = None
    send_working_days_only: Bool = False
    card_pattern: Regex = r"[0-9]{5,14}"
    # The platforms the library buys codes for (a request for another one is refused as
    # service_not_offered, and the desk offers only these). Default: every service the
    # config knows (the shipped ones and [[services]]; mailbot.config.load fills it in: a
    # LibrarySettings made in code without it offers the shipped ones).
    services: Services = SERVICES
    # Told by e-mail (once per service and month) when a month's window opened and no
    # pool was imported for it (pool_not_ready). Default: the top-level staff_email.
    staff_email: Address | None = None
    # Verification strictness (SPEC 2.5). Cards are not secrets: the policy decides.
    # A sip2 reader source cannot answer the loan and data-update checks: SIP2 patron
    # information carries no loan history and no data-update date (mailbot.config.load).
    check_name: Bool = True
    check_sender: Bool = False
    check_data_updated: Bool = False
    check_loans_this_year: Bool = False
    active_loan_months: NotNegative = 0  # a loan within the last N months (0 = not asked)
    # Refuse an account created online and never confirmed at the desk (the reader's
    # `confirmed` is false; unknown is not refused): unconfirmed_account. A sip2 source
    # cannot tell; the koha preset only by sql.unconfirmed_categories (mailbot.config.load).
    require_confirmed_account: Bool = False
    max_balance_due: Amount = "0"  # refuse as `debt` when the balance is above this (PLN)
    max_overdue_items: NotNegative = 0
    penalty_months: NotNegative = 3
    # The general form of the penalty (mailbot/penalty.py): once `misses` months within
    # `within_months` months had a code not activated, no code for `block_months` months;
    # 0 or false: off. Not together with penalty_months (= { 1, 1, penalty_months }).
    penalty: PenaltyRule | None = None
    # The replies' "access lasts 30 days" sentence, replaced for codes of some months:
    # { "12" = { pl = "…", en = "…" } } (mailbot/validity.py).
    validity: ValidityTexts = ()
    min_age_legimi: NotNegative = 0  # 0 = no age limit
    min_age_empik_go: NotNegative = 0
    # The same for any service, by id: min_ages = { ebookpoint = 13 } (wins over the two
    # above). Read as (id, age) pairs.
    min_ages: AgesByService = ()  # type: ignore[assignment]
    one_code_per_month: Literal["across", "per_service"] = "across"
    eligibility_test: Bool = False  # answer TEST LEGIMI / TEST EMPIK GO with a verdict
    # SPEC 2.11: this many days before the month ends, remind holders of unactivated codes
    # (0 = no reminders), at this time of day.
    reminder_days: NotNegative = 3
    reminder_time: HHMM = "10:00"
    replies_per_sender_per_day: NotNegative = 5
    # One address cannot collect codes for many cards: at most this many codes a month go
    # to one sender address (0 = no limit). A parent writing for children needs a few.
    max_codes_per_address_per_month: NotNegative = 3
    languages: Languages = ("pl", "en")
    contact: Str | None = None
    # Where the patron enters the code: the library's own page wins over the service's
    # (its activation_url in [[services]]; Legimi's and Empik Go's shipped ones are
    # https://www.legimi.pl/ and https://www.empikgo.com/). "" shows none: the reply says
    # the link is on the library's website. activation_urls = { ebookpoint = "…" } is the
    # same for any service, by id (wins over the two named keys).
    activation_url_legimi: Str | None = None
    activation_url_empik_go: Str | None = None
    activation_urls: UrlsByService = ()  # type: ignore[assignment]
    # The library's own reply texts: a folder laid out like templates/email
    # (pl/issued.txt.j2, en/_macros.html.j2 …); a file there replaces the shipped one for
    # this library only (mailbot.respond.render). Relative: to the config file's folder.
    texts_dir: Str | None = None
    # Repeat an issued code to a patron who asks again from the address it went to.
    repeat_code_to_same_address: Bool = True
    reader_source: Literal["local", "sql", "sip2"] = "local"
    sql: SqlSourceSettings = field(default_factory=SqlSourceSettings)
    sip2: Sip2SourceSettings = field(default_factory=Sip2SourceSettings)
    # Codes of each pool kept for the desk and for first-time patrons (issue 20).
    quotas: QuotaSettings = field(default_factory=QuotaSettings)

    __pydantic_config__ = CLOSED

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        # The table as the file has it: penalty and penalty_months are one rule said two
        # ways, so giving both is a mistake (only a file's keys can tell it).
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(penalties.one_key_of_two,
                                                             handler(source))

    @property
    def penalty_rule(self) -> penalties.Penalty:
        """The penalty in force: ``penalty`` if given, else ``penalty_months``."""
        if self.penalty is not None:
            return self.penalty
        return penalties.from_months(self.penalty_months)

    def min_age(self, service: str) -> int:
        for key, age in self.min_ages:
            if key == service:
                return int(age)
        return {"legimi": self.min_age_legimi, "empik_go": self.min_age_empik_go}.get(service, 0)

    def activation_url(self, service: str, catalogue: Catalogue) -> str | None:
        """The page the reply sends the patron to for ``service``: the library's own,
        else the service's (None, or "": the reply says it is on the library's website)."""
        for key, url in self.activation_urls:
            if key == service:
                return str(url)
        own = getattr(self, f"activation_url_{service}", None) \
            if service in ("legimi", "empik_go") else None
        if own is not None:
            return own  # type: ignore[no-any-return]
        known = catalogue.get(service)
        return known.activation_url if known else None


@dataclass(frozen=True)
class Settings:
    timezone: TimeZone = "Europe/Warsaw"
    # MAILBOT_DATABASE_URL, when set, wins (mailbot.config.load). A relative SQLite path,
    # like every relative path in the file (templates_dir, a Maildir's path, file_outbox,
    # CA, key and secret files), is relative to the config file's folder.
    database_url: Str = field(default="sqlite:///mailbot.db", repr=False)
    templates_dir: Str | None = None
    max_message_bytes: Int = 2_000_000
    # SPEC 2.12: raw mail and sent reply bodies are kept this many days; the ledger stays.
    retention_days: AtLeastOne = 30
    # Mail from these addresses is never answered ("*@spam.example" patterns allowed).
    blocked_senders: tuple[Str, ...] = ()
    # Staff told of a pool_not_ready (a library's own staff_email wins); None: nobody.
    staff_email: Address | None = None
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    web: WebSettings = field(default_factory=WebSettings)
    imports: ImportSettings = field(default_factory=ImportSettings)
    libraries: tuple[LibrarySettings, ...] = ()
    mailboxes: tuple[MailboxSettings, ...] = ()
    # The platforms besides (or changing) the shipped Legimi and Empik Go: [[services]]
    # (mailbot.config.services). Everything reads them through ``catalogue``.
    services: tuple[ServiceSettings, ...] = ()
    # The file the settings were read from (not a key of it).
    source: str = field(default="<defaults>", compare=False)

    __pydantic_config__ = CLOSED

    def library(self, library_id: str) -> LibrarySettings:
        for lib in self.libraries:
            if lib.id == library_id:
                return lib
        known = ", ".join(lib.id for lib in self.libraries) or "none configured"
        raise ConfigError(f"unknown library {library_id!r} (known: {known})", file=self.source)

    @cached_property
    def catalogue(self) -> Catalogue:
        """Every service the config knows: the shipped ones, changed and added to by
        [[services]] (mailbot.services.Catalogue)."""
        return catalogue(self.services)

    def listed_services(self, library: LibrarySettings) -> tuple[str, ...]:
        """The services a library's report rows and status list: Legimi and Empik Go
        always (as before [[services]]: one the library does not offer shows empty), a
        configured one where the library offers it."""
        return tuple(s for s in self.catalogue.ids if s in SERVICES or s in library.services)

    def staff_email_of(self, library_id: str) -> str | None:
        """Where staff alerts of the library go: its own staff_email, else the global one."""
        return self.library(library_id).staff_email or self.staff_email

    def library_tz(self, library_id: str) -> ZoneInfo:
        return ZoneInfo(self.library(library_id).timezone or self.timezone)

    def mailboxes_of(self, library_id: str) -> list[MailboxSettings]:
        return list(self._mailboxes_by_library.get(library_id, ()))

    # Asked per mail and per library: a consortium has hundreds of mailboxes, so both are
    # worked out once (the settings never change).
    @cached_property
    def _mailboxes_by_library(self) -> dict[str, tuple[MailboxSettings, ...]]:
        found: dict[str, list[MailboxSettings]] = {}
        for m in self.mailboxes:
            found.setdefault(m.library, []).append(m)
        return {library: tuple(boxes) for library, boxes in found.items()}

    def relay_of(self, mb: MailboxSettings) -> SmtpSettings:
        """The relay a mailbox's replies leave through: its own, else the global one."""
        return mb.smtp if mb.smtp is not None else self.smtp

    def relay_for(self, library_id: str, mail_from: str) -> SmtpSettings:
        """The relay of the reply (or reminder) a library sends from ``mail_from`` (the
        address of the mailbox its request came in on); the global one for an address no
        mailbox has (any more)."""
        mb = self._mailbox_by_address.get((library_id, mail_from.strip().lower()))
        return self.smtp if mb is None else self.relay_of(mb)

    @cached_property
    def relays(self) -> dict[str, SmtpSettings]:
        """Every sending account in use, by its key: the global relay first (unless every
        mailbox has its own), then the mailboxes' in configuration order."""
        found: dict[str, SmtpSettings] = {}
        if not self.mailboxes or any(mb.smtp is None for mb in self.mailboxes):
            found[self.smtp.key] = self.smtp
        for mb in self.mailboxes:
            relay = self.relay_of(mb)
            found.setdefault(relay.key, relay)
        return found

    @cached_property
    def _mailbox_by_address(self) -> dict[tuple[str, str], MailboxSettings]:
        found: dict[tuple[str, str], MailboxSettings] = {}
        for mb in self.mailboxes:
            found.setdefault((mb.library, mb.address.strip().lower()), mb)
        return found

    @cached_property
    def own_addresses(self) -> frozenset[str]:
        return frozenset(m.address.strip().lower() for m in self.mailboxes)
