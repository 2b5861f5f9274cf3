"""Every text of the dashboard, in Polish (the default) and English.

One flat dictionary per language; ``t(lang, key, **params)`` formats with ``str.format``.
A key missing in a language is a bug (a test renders every page in both), so ``t`` raises
rather than showing a key to staff. A text with a count has three forms, ``key_one``,
``key_few`` and ``key_many``, and ``tn`` picks one by the language's plural rule (Polish:
1 odpowiedź, 2–4 odpowiedzi, 5 odpowiedzi; 12–14 take the third, 22–24 the second).

Still one concept over 400 lines: the dashboard's words, in both languages side by side.
"""

from __future__ import annotations

from typing import Any

from mailbot.outcomes import Outcome

LANGUAGES = ("pl", "en")

SERVICES = {"legimi": "Legimi", "empik_go": "Empik Go"}

# Outcome labels come from the catalogue; these are the other words the outcome column
# and filters show (a request's states, the rule names of a trail, the reminder notice).
_NOT_OUTCOMES: dict[str, dict[str, str]] = {
    "pl": {
        "eligible": "uprawniony", "waiting": "oczekuje", "set_aside": "odłożone (błąd)",
        "rate_limit": "limit odpowiedzi", "pool": "pula kodów",
        "staff_override": "decyzja pracownika", "reminder": "przypomnienie",
    },
    "en": {
        "eligible": "eligible", "waiting": "waiting", "set_aside": "set aside (error)",
        "rate_limit": "reply limit", "pool": "code pool", "staff_override": "staff decision",
        "reminder": "reminder",
    },
}
OUTCOMES: dict[str, dict[str, str]] = {
    lang: {**{str(o): o.label(lang) for o in Outcome}, **_NOT_OUTCOMES[lang]}
    for lang in LANGUAGES
}

# The rule trail names each check by what it asks (a passed "debt" check means none owed).
RULES: dict[str, dict[str, str]] = {
    "pl": {
        "too_early": "okno zgłoszeń otwarte", "no_card": "numer karty podany",
        "ambiguous_card": "jeden numer karty", "unknown_card": "karta w systemie",
        "name_mismatch": "nazwisko zgodne", "sender_mismatch": "adres nadawcy zgodny",
        "already_received": "bez kodu w tym miesiącu", "address_limit": "limit kodów na adres",
        "inactive_account": "konto ważne", "age_restricted": "wiek", "debt": "bez zadłużenia",
        "overdue": "bez przetrzymań", "data_not_updated": "dane aktualne",
        "no_loans_this_year": "wypożyczenia w tym roku", "blocked": "bez blokady",
        "pool": "pula kodów", "rate_limit": "limit odpowiedzi",
        "staff_override": "decyzja pracownika", "eligibility_test": "test uprawnień",
    },
    "en": {
        "too_early": "request window open", "no_card": "card number given",
        "ambiguous_card": "one card number", "unknown_card": "card on file",
        "name_mismatch": "name matches", "sender_mismatch": "sender address matches",
        "already_received": "no code this month yet", "address_limit": "codes per address",
        "inactive_account": "account valid", "age_restricted": "age", "debt": "no money owed",
        "overdue": "no overdue loans", "data_not_updated": "data updated",
        "no_loans_this_year": "loans this year", "blocked": "not blocked",
        "pool": "code pool", "rate_limit": "reply limit",
        "staff_override": "staff decision", "eligibility_test": "eligibility test",
    },
}

MESSAGES: dict[str, dict[str, str]] = {
    "pl": {
        # frame
        "nav_label": "Menu główne", "nav_queue": "Kolejka", "nav_requests": "Zgłoszenia",
        "nav_pools": "Pule kodów", "nav_desk": "Wydanie przy ladzie", "nav_imports": "Import",
        "nav_reports": "Raporty", "nav_audit": "Dziennik działań", "logout": "Wyloguj",
        "role_admin": "administrator", "footer": "kody Legimi i Empik Go dla czytelników",
        "back_to_queue": "Wróć do kolejki",
        "error_400": "Nieprawidłowe żądanie.",
        "error_403": "Brak uprawnień do tej operacji. Zaloguj się ponownie.",
        "error_403_csrf": "Formularz wygasł lub nie pochodzi z tej strony. Odśwież stronę i spróbuj ponownie.",
        "error_404": "Nie ma takiej strony albo nie masz do niej dostępu.",
        "error_500": "Wystąpił błąd.",
        "error_413": "Przesłany plik jest za duży: największy dopuszczalny ma {mb} MB.",
        # login
        "login_title": "Logowanie", "login_intro": "Panel pracowników biblioteki.",
        "login_name": "Nazwa użytkownika", "login_password": "Hasło", "login_submit": "Zaloguj",
        "login_failed": "Nieprawidłowa nazwa użytkownika lub hasło.",
        "login_locked": "Zbyt wiele nieudanych prób logowania na to konto z tego adresu sieciowego. Ze względów bezpieczeństwa logowanie jest wstrzymane do {until} — spróbuj ponownie później albo poproś administratora o nowe hasło.",
        "login_paused_address": "Zbyt wiele nieudanych prób logowania z tego adresu sieciowego. Ze względów bezpieczeństwa logowanie jest wstrzymane do {until} — spróbuj ponownie później.",
        # generic
        "all": "wszystkie", "none": "Brak.", "filter": "Filtruj", "clear": "Wyczyść",
        "show": "Pokaż", "month": "miesiąc", "total": "RAZEM", "to": "do", "note": "Notatka",
        "reason": "Powód (wymagany)", "file": "Plik", "details": "Szczegóły",
        "newer": "nowsze", "older": "starsze", "print": "Drukuj",
        "updated_at": "Zaktualizowano", "handled": "załatwione",
        # queue
        "queue_title": "Kolejka na żywo",
        "queue_live_note": "Strona odświeża się sama co {seconds} s.",
        "no_libraries": "Twoje konto nie ma przypisanej żadnej biblioteki.",
        "q_waiting": "czeka na decyzję", "q_decided": "rozpatrzone (24 h)",
        "q_held": "odpowiedzi czekają na godziny wysyłki", "q_sending": "w wysyłce / ponawiane",
        "q_failed": "nieudane wysyłki", "q_set_aside": "odłożone dla pracownika",
        "q_codes_left": "kodów {service} zostało", "q_mailboxes": "Skrzynki",
        "q_source": "Źródło danych czytelników", "q_recent": "Ostatnie decyzje",
        "none_24h": "Brak decyzji w ostatnich 24 godzinach.",
        "col_mailbox": "Skrzynka", "col_last_poll": "Ostatnie sprawdzenie", "col_health": "Stan",
        "health_ok": "działa", "health_error": "błąd", "health_never": "jeszcze nie sprawdzano",
        "health_down": "NIE DZIAŁA", "down_since": "od {since}",
        "source_down_wait": "Zgłoszenia czekają w kolejności i zostaną rozpatrzone, gdy system odpowie.",
        "mb_down_since": "nie działa od {since}",
        "mb_decided_without": "Od {since} zgłoszenia biblioteki są rozpatrywane bez tej skrzynki. Jej poczta, gdy uda się ją odczytać, zostanie rozpatrzona w kolejności nadejścia wśród zgłoszeń jeszcze nierozpatrzonych.",
        "mb_waits_until": "Zgłoszenia biblioteki czekają na tę skrzynkę do {until}; potem będą rozpatrywane bez niej.",
        "mb_waits_always": "Zgłoszenia biblioteki czekają na tę skrzynkę, dopóki nie zacznie działać (mailbox_grace = 0).",
        "mb_reading_again": "Znów odczytywana (nie działała od {since}); zgłoszenia czekają, aż zostanie odczytana.",
        "mb_next_login_one": "Następna próba logowania: {when} (po {n} odrzuconej próbie).",
        "mb_next_login_few": "Następna próba logowania: {when} (po {n} odrzuconych próbach z rzędu).",
        "mb_next_login_many": "Następna próba logowania: {when} (po {n} odrzuconych próbach z rzędu).",
        "times_in": "Godziny w strefie {zone}.",
        "q_relays": "Wysyłka odpowiedzi", "col_relay": "Konto wysyłki",
        "col_queue": "Kolejka", "col_last_out": "Ostatnia wyjdzie",
        "relay_waiting_one": "{n} odpowiedź czeka", "relay_waiting_few": "{n} odpowiedzi czekają",
        "relay_waiting_many": "{n} odpowiedzi czeka",
        "relay_later": "+{n} poza godzinami wysyłki",
        "relay_limits": "limity: {limits}", "relay_sent_day": "wysłane w ciągu 24 h: {n}",
        "limit_min": "{n} na minutę", "limit_hour": "{n} na godzinę", "limit_day": "{n} na dobę",
        "relay_paused": "wysyłka wstrzymana do {until}",
        "pause_auth": "serwer odrzucił logowanie", "pause_throttled": "dostawca poprosił o wolniejszą wysyłkę",
        "relay_error_since": "błąd od {since}",
        "source_local": "lokalna tabela czytelników", "source_sql": "baza systemu bibliotecznego (SQL)",
        "source_sip2": "serwer SIP2 systemu bibliotecznego",
        "state_error": "odłożone (błąd)", "state_manual": "do ręcznej obsługi",
        "state_new": "czeka",
        # columns
        "col_received": "Wpłynęło", "col_from": "Od", "col_subject": "Temat",
        "col_service": "Serwis", "col_card": "Nr karty", "col_outcome": "Wynik",
        "col_reply": "Odpowiedź", "col_branch": "Filia (skrzynka)", "col_library": "Biblioteka",
        "col_created": "Utworzono", "col_to": "Do", "col_error": "Błąd", "col_why": "Powód",
        "col_due": "Wysyłka od", "col_attempts": "próby", "col_decided": "Rozpatrzono",
        "col_date_header": "Data w nagłówku", "col_patron": "Czytelnik", "col_code": "Kod",
        "col_sent": "wysłano", "col_when": "Kiedy", "col_who": "Kto", "col_action": "Działanie",
        "col_detail": "Szczegóły", "col_request": "Zgłoszenie", "col_month": "Miesiąc",
        "col_bought": "Kupione", "col_issued": "Wydane", "col_left": "Zostało",
        "col_expired": "Wygasłe", "col_activated": "Aktywowane", "col_requests": "Zgłoszenia",
        "col_refused": "Odmowy", "col_median": "Mediana czasu odpowiedzi [s]",
        # requests
        "requests_title": "Zgłoszenia", "requests_count": "Znaleziono: {n}",
        "f_month": "Miesiąc", "f_library": "Biblioteka", "f_branch": "Filia",
        "f_service": "Serwis", "f_outcome": "Wynik", "f_card": "Nr karty",
        "f_address": "Adres e-mail", "no_requests": "Brak zgłoszeń dla tych filtrów.",
        "reply_sent": "wysłana", "reply_failed": "nieudana", "reply_pending": "czeka",
        # request
        "request_title": "Zgłoszenie nr {id}", "internaldate": "czas odbioru przez serwer",
        "trail": "Ścieżka reguł", "no_trail": "Jeszcze nie rozpatrzone.",
        "result_passed": "spełnione", "result_refused": "odmowa", "result_issued": "wydano",
        "original_mail": "Oryginalna wiadomość",
        "mail_truncated": "Wiadomość była bardzo duża — pokazano jej początek.",
        "mail_purged": "Treść wiadomości została usunięta po okresie przechowywania (RODO).",
        "show_html": "Pokaż wersję HTML (bez skryptów i obrazków z sieci)",
        "html_sandboxed": "Wersja HTML jest wyświetlana w izolowanej ramce: skrypty, formularze i zasoby z internetu są zablokowane.",
        "replies": "Odpowiedź", "no_reply": "Na tę wiadomość nie wysyła się odpowiedzi.",
        "by_staff": "przez pracownika", "reply_text": "Treść odpowiedzi",
        "reply_purged": "Treść odpowiedzi usunięta po okresie przechowywania.",
        "resend": "Wyślij ponownie", "actions": "Działania",
        "override": "Wydaj kod mimo odmowy",
        "override_help": "Kod z puli bieżącego miesiąca; kody należne wcześniejszym zgłoszeniom e-mail są chronione. Czytelnik dostanie odpowiedź z kodem.",
        "override_submit": "Wydaj kod", "mark_handled": "Oznacz jako załatwione",
        "handled_help": "Np. sprawa wyjaśniona telefonicznie; znika z kolejki do obsługi.",
        "audit_for_request": "Historia działań", "no_audit": "Brak zapisanych działań.",
        "done_resend": "Odpowiedź wróciła do kolejki wysyłki.",
        "done_override": "Kod wydany; odpowiedź z kodem czeka na wysyłkę.",
        "done_handled": "Oznaczono jako załatwione.",
        "err_no_such_reply": "Nie ma takiej odpowiedzi.",
        "err_reply_purged": "Treść odpowiedzi została już usunięta — nie można jej wysłać ponownie.",
        "err_reply_pending": "Ta odpowiedź już czeka na wysyłkę.",
        "err_reason_required": "Podaj powód wydania kodu mimo odmowy.",
        "err_not_overridable": "Tego zgłoszenia nie można rozpatrzyć inaczej.",
        "err_has_code": "To zgłoszenie ma już kod.",
        "err_no_address": "Brak adresu nadawcy — wydaj kod przy ladzie.",
        "err_service": "Wybierz serwis.", "err_card_required": "Podaj numer karty.",
        "err_pool_empty": "Brak wolnego kodu: zostało {left}, należne wcześniejszym zgłoszeniom e-mail: {owed}.",
        "err_busy": "Baza danych jest chwilowo zajęta — spróbuj ponownie.",
        "err_source_down": "System biblioteczny nie odpowiada — spróbuj za chwilę.",
        "err_no_file": "Wybierz plik.",
        # pools
        "pools_title": "Pule kodów", "no_pools": "Nie zaimportowano jeszcze żadnych kodów.",
        "show_charts": "wykresy", "chart_depletion": "Wyczerpywanie się puli",
        "chart_per_minute": "Zgłoszenia na minutę po otwarciu",
        "chart_codes_left": "kodów zostało", "chart_requests": "zgłoszeń",
        "window_opened": "otwarcie: {at}", "pool_empty_at": "pula pusta od {at}",
        "per_minute_note": "Pierwsze {minutes} minut od otwarcia okna; razem {n} zgłoszeń.",
        # desk
        "desk_title": "Wydanie kodu przy ladzie",
        "desk_intro": "Ten sam werdykt, który dałby bot; kody należne wcześniejszym zgłoszeniom e-mail nie są wydawane.",
        "desk_name": "Imię i nazwisko (jak w karcie)", "desk_check": "Sprawdź uprawnienia",
        "desk_eligible": "Czytelnik może otrzymać kod",
        "desk_issue": "Wydaj kod {service} i drukuj potwierdzenie",
        "desk_on_file": "W systemie", "desk_no_reader": "brak czytelnika o tym numerze",
        "desk_codes_left": "Kodów w puli", "desk_owed": "Należne wcześniejszym e-mailom",
        "desk_note": "Uwagi",
        "why_too_early": "Okno zgłoszeń w tym miesiącu jeszcze się nie otworzyło.",
        "why_unknown_card": "Nie ma czytelnika o tym numerze karty.",
        "why_name_mismatch": "Nazwisko nie zgadza się z danymi w karcie.",
        "why_already_received": "Czytelnik otrzymał już kod w tym miesiącu.",
        "why_inactive_account": "Konto czytelnika jest nieważne — trzeba je przedłużyć.",
        "why_age_restricted": "Serwis ma ograniczenie wiekowe.",
        "why_debt": "Czytelnik ma zaległe opłaty.",
        "why_overdue": "Czytelnik ma przetrzymane książki.",
        "why_data_not_updated": "Dane osobowe nie były aktualizowane w tym roku.",
        "why_no_loans_this_year": "Brak wypożyczeń w tym roku.",
        "why_blocked": "Blokada za nieaktywowany kod z poprzednich miesięcy.",
        "why_pool_exhausted": "Nie ma wolnego kodu (pozostałe należą się wcześniejszym zgłoszeniom e-mail).",
        # slip
        "slip_title": "Potwierdzenie wydania kodu", "slip_heading": "Twój kod {service}",
        "slip_issued": "Wydano", "slip_activate_by": "Aktywuj do",
        "slip_how": "Jak aktywować kod",
        "steps_legimi": "Wejdź na stronę aktywacji Legimi (adres poniżej).\nZaloguj się albo załóż bezpłatne konto Legimi.\nWpisz kod z tego potwierdzenia i zatwierdź.\nPobierz aplikację Legimi i czytaj na telefonie, tablecie lub czytniku.",
        "steps_empik_go": "Wejdź na stronę aktywacji Empik Go (adres poniżej).\nZaloguj się albo załóż bezpłatne konto Empik Go.\nWpisz kod z tego potwierdzenia i zatwierdź.\nPobierz aplikację Empik Go i słuchaj lub czytaj na telefonie albo tablecie.",
        "slip_url": "Strona aktywacji:",
        "slip_warning": "Kod jest jednorazowy — nie udostępniaj go nikomu. Kod nieaktywowany do końca miesiąca przepada.",
        "slip_contact": "Pytania:",
        # imports
        "imports_title": "Import plików",
        "imports_intro": "Każdy import jest „wszystko albo nic”: błędny wiersz nie zmienia niczego w bazie, a komunikat wskazuje plik, wiersz i kolumnę.",
        "import_codes": "Kody (pula na miesiąc)",
        "import_codes_help": "XLSX, XLS, CSV lub tabela HTML z panelu platformy. Kolumna z kodami jest rozpoznawana po nagłówku.",
        "import_readers": "Czytelnicy",
        "import_readers_help": "CSV lub XLSX z nagłówkiem: numer_karty, imie, nazwisko, email, wazna_do, zadluzenie, przetrzymania…",
        "import_activations": "Raport aktywacji",
        "import_activations_help": "Raport platformy: kolumna z kodem i data aktywacji (puste = nieaktywowany).",
        "column_optional": "Kolumna z kodem (opcjonalnie)",
        "remove_missing": "To pełny eksport: usuń czytelników, których nie ma w pliku",
        "import_submit": "Importuj", "import_failed": "Nic nie zaimportowano.",
        "recent_imports": "Ostatnie importy",
        "done_readers": "{file}: dodano {created} czytelników, zaktualizowano {updated}, bez zmian {unchanged}.",
        "done_readers_removed": "Usunięto {n} czytelników nieobecnych w pliku.",
        "done_codes": "{file}: dodano {added} kodów ({service}, {month}).",
        "done_activations": "{file}: aktywowane {activated}, nieaktywowane {not_activated}, nieznane {unknown}.",
        # reports
        "reports_title": "Raport miesięczny",
        "reports_intro": "Dla każdej biblioteki, filii i serwisu: wydane kody, odmowy według powodu, aktywacje, kody wygasłe i mediana czasu odpowiedzi.",
        "download_xlsx": "Pobierz XLSX", "branch_desk": "wydane przy ladzie",
        # audit
        "audit_title": "Dziennik działań",
        "audit_intro": "Każde działanie pracowników: kto, kiedy, co i przy którym zgłoszeniu.",
        "action_resend": "ponowna wysyłka", "action_override": "kod mimo odmowy",
        "action_handled": "oznaczono jako załatwione", "action_desk_issue": "wydanie przy ladzie",
        "action_import_readers": "import czytelników", "action_import_codes": "import kodów",
        "action_import_activations": "import aktywacji",
        "action_withdraw_pool": "wycofanie puli",
        "withdraw": "Wycofaj niewydane", "withdraw_title": "Wycofanie niewydanych kodów puli",
        "withdraw_will": "Do wycofania: {n} (kody jeszcze niewydane). Znikną z systemu; "
                         "plik z poprawnymi kodami można potem zaimportować ponownie.",
        "withdraw_keeps": "Zostają bez zmian: wydane {issued}, wygasłe {expired}.",
        "withdraw_confirm": "Wycofaj te kody", "cancel": "Anuluj", "back": "Wróć",
        "done_withdrawn": "Wycofano niewydane kody: {n}. Wydane ({issued}) zostały.",
        "err_no_pool": "Nie ma puli {service} na {month}.",
    },
    "en": {
        "nav_label": "Main menu", "nav_queue": "Queue", "nav_requests": "Requests",
        "nav_pools": "Code pools", "nav_desk": "Walk-in desk", "nav_imports": "Imports",
        "nav_reports": "Reports", "nav_audit": "Audit log", "logout": "Log out",
        "role_admin": "admin", "footer": "Legimi and Empik Go codes for library patrons",
        "back_to_queue": "Back to the queue",
        "error_400": "Bad request.",
        "error_403": "You may not do this. Please log in again.",
        "error_403_csrf": "The form has expired or did not come from this site. Reload the page and try again.",
        "error_404": "No such page, or you have no access to it.",
        "error_500": "Something went wrong.",
        "error_413": "The file sent is too large: the largest accepted is {mb} MB.",
        "login_title": "Log in", "login_intro": "The library staff dashboard.",
        "login_name": "User name", "login_password": "Password", "login_submit": "Log in",
        "login_failed": "Wrong user name or password.",
        "login_locked": "Too many failed logins to this account from this network address. For your security logging in is paused until {until} — please try again later or ask an administrator for a new password.",
        "login_paused_address": "Too many failed logins from this network address. For your security logging in is paused until {until} — please try again later.",
        "all": "all", "none": "None.", "filter": "Filter", "clear": "Clear", "show": "Show",
        "month": "month", "total": "TOTAL", "to": "to", "note": "Note",
        "reason": "Reason (required)", "file": "File", "details": "Details",
        "newer": "newer", "older": "older", "print": "Print",
        "updated_at": "Updated", "handled": "handled",
        "queue_title": "Live queue",
        "queue_live_note": "This page refreshes itself every {seconds} s.",
        "no_libraries": "Your account has no library assigned.",
        "q_waiting": "waiting for a decision", "q_decided": "decided (24 h)",
        "q_held": "replies waiting for sending hours", "q_sending": "sending / retrying",
        "q_failed": "failed sends", "q_set_aside": "set aside for staff",
        "q_codes_left": "{service} codes left", "q_mailboxes": "Mailboxes",
        "q_source": "Reader data source", "q_recent": "Recent decisions",
        "none_24h": "No decisions in the last 24 hours.",
        "col_mailbox": "Mailbox", "col_last_poll": "Last checked", "col_health": "Health",
        "health_ok": "ok", "health_error": "error", "health_never": "not checked yet",
        "health_down": "DOWN", "down_since": "since {since}",
        "source_down_wait": "Requests wait in order and are decided as soon as it answers.",
        "mb_down_since": "down since {since}",
        "mb_decided_without": "Since {since} the library's requests are decided without this mailbox. Its mail, once it can be read, is decided in arrival order among the requests still undecided.",
        "mb_waits_until": "The library's requests wait for this mailbox until {until}; after that they are decided without it.",
        "mb_waits_always": "The library's requests wait for this mailbox until it works again (mailbox_grace = 0).",
        "mb_reading_again": "Being read again (down since {since}); requests wait until it has been read.",
        "mb_next_login_one": "Next login attempt: {when} (after {n} refused attempt).",
        "mb_next_login_few": "Next login attempt: {when} (after {n} refused attempts in a row).",
        "mb_next_login_many": "Next login attempt: {when} (after {n} refused attempts in a row).",
        "times_in": "Times in {zone}.",
        "q_relays": "Sending replies", "col_relay": "Sending account",
        "col_queue": "Queue", "col_last_out": "Last goes out",
        "relay_waiting_one": "{n} reply waiting", "relay_waiting_few": "{n} replies waiting",
        "relay_waiting_many": "{n} replies waiting",
        "relay_later": "+{n} outside sending hours",
        "relay_limits": "limits: {limits}", "relay_sent_day": "sent in the last 24 h: {n}",
        "limit_min": "{n} a minute", "limit_hour": "{n} an hour", "limit_day": "{n} a day",
        "relay_paused": "paused until {until}",
        "pause_auth": "the server refused the login", "pause_throttled": "the provider asked us to send more slowly",
        "relay_error_since": "error since {since}",
        "source_local": "local reader table", "source_sql": "library system database (SQL)",
        "source_sip2": "library system SIP2 server",
        "state_error": "set aside (error)", "state_manual": "for staff", "state_new": "waiting",
        "col_received": "Received", "col_from": "From", "col_subject": "Subject",
        "col_service": "Service", "col_card": "Card no.", "col_outcome": "Outcome",
        "col_reply": "Reply", "col_branch": "Branch (mailbox)", "col_library": "Library",
        "col_created": "Created", "col_to": "To", "col_error": "Error", "col_why": "Why",
        "col_due": "Send from", "col_attempts": "attempts", "col_decided": "Decided",
        "col_date_header": "Date header", "col_patron": "Patron", "col_code": "Code",
        "col_sent": "sent", "col_when": "When", "col_who": "Who", "col_action": "Action",
        "col_detail": "Details", "col_request": "Request", "col_month": "Month",
        "col_bought": "Bought", "col_issued": "Issued", "col_left": "Left",
        "col_expired": "Expired", "col_activated": "Activated", "col_requests": "Requests",
        "col_refused": "Refusals", "col_median": "Median reply time [s]",
        "requests_title": "Requests", "requests_count": "Found: {n}",
        "f_month": "Month", "f_library": "Library", "f_branch": "Branch",
        "f_service": "Service", "f_outcome": "Outcome", "f_card": "Card no.",
        "f_address": "E-mail address", "no_requests": "No requests match these filters.",
        "reply_sent": "sent", "reply_failed": "failed", "reply_pending": "waiting",
        "request_title": "Request #{id}", "internaldate": "server receipt time",
        "trail": "Rule trail", "no_trail": "Not decided yet.",
        "result_passed": "passed", "result_refused": "refused", "result_issued": "issued",
        "original_mail": "Original mail",
        "mail_truncated": "The mail was very large — only its start is shown.",
        "mail_purged": "The mail's content was deleted after the retention period (GDPR).",
        "show_html": "Show the HTML version (no scripts, no images from the web)",
        "html_sandboxed": "The HTML version is shown in an isolated frame: scripts, forms and anything from the internet are blocked.",
        "replies": "Reply", "no_reply": "This mail gets no reply.",
        "by_staff": "by staff", "reply_text": "Reply text",
        "reply_purged": "The reply's text was deleted after the retention period.",
        "resend": "Send again", "actions": "Actions",
        "override": "Issue a code anyway",
        "override_help": "A code from this month's pool; codes owed to earlier e-mail requests are protected. The patron gets a reply with the code.",
        "override_submit": "Issue code", "mark_handled": "Mark as handled",
        "handled_help": "E.g. sorted out by phone; it leaves the staff queue.",
        "audit_for_request": "Action history", "no_audit": "No actions recorded.",
        "done_resend": "The reply is back in the sending queue.",
        "done_override": "Code issued; the reply with the code is waiting to be sent.",
        "done_handled": "Marked as handled.",
        "err_no_such_reply": "No such reply.",
        "err_reply_purged": "The reply's text was already deleted — it cannot be sent again.",
        "err_reply_pending": "This reply is already waiting to be sent.",
        "err_reason_required": "Give the reason for issuing a code anyway.",
        "err_not_overridable": "This request cannot be overridden.",
        "err_has_code": "This request has a code already.",
        "err_no_address": "No sender address — issue the code at the desk.",
        "err_service": "Choose a service.", "err_card_required": "Enter the card number.",
        "err_pool_empty": "No free code: {left} left, owed to earlier e-mail requests: {owed}.",
        "err_busy": "The database is busy right now — please try again.",
        "err_source_down": "The library system is not answering — try again in a moment.",
        "err_no_file": "Choose a file.",
        "pools_title": "Code pools", "no_pools": "No codes imported yet.",
        "show_charts": "charts", "chart_depletion": "Pool depletion",
        "chart_per_minute": "Requests per minute after opening",
        "chart_codes_left": "codes left", "chart_requests": "requests",
        "window_opened": "opened: {at}", "pool_empty_at": "empty since {at}",
        "per_minute_note": "The first {minutes} minutes after the window opened; {n} requests in all.",
        "desk_title": "Walk-in desk",
        "desk_intro": "The same verdict the bot would give; codes owed to earlier e-mail requests are never handed out.",
        "desk_name": "Patron's name (as on the card)", "desk_check": "Check eligibility",
        "desk_eligible": "The patron may get a code",
        "desk_issue": "Issue a {service} code and print the slip",
        "desk_on_file": "On file", "desk_no_reader": "no reader with this card number",
        "desk_codes_left": "Codes in the pool", "desk_owed": "Owed to earlier e-mails",
        "desk_note": "Notes",
        "why_too_early": "This month's request window has not opened yet.",
        "why_unknown_card": "No reader has this card number.",
        "why_name_mismatch": "The name does not match the card's record.",
        "why_already_received": "The patron already got a code this month.",
        "why_inactive_account": "The reader's account has expired — it needs renewing.",
        "why_age_restricted": "The service has an age limit.",
        "why_debt": "The patron owes money.",
        "why_overdue": "The patron has overdue loans.",
        "why_data_not_updated": "Personal data not updated this year.",
        "why_no_loans_this_year": "No loans this year.",
        "why_blocked": "Blocked for an unactivated code in an earlier month.",
        "why_pool_exhausted": "No free code (those left are owed to earlier e-mail requests).",
        "slip_title": "Code slip", "slip_heading": "Your {service} code",
        "slip_issued": "Issued", "slip_activate_by": "Activate by",
        "slip_how": "How to activate the code",
        "steps_legimi": "Open the Legimi activation page (address below).\nLog in or create a free Legimi account.\nEnter the code from this slip and confirm.\nInstall the Legimi app and read on a phone, tablet or e-reader.",
        "steps_empik_go": "Open the Empik Go activation page (address below).\nLog in or create a free Empik Go account.\nEnter the code from this slip and confirm.\nInstall the Empik Go app and listen or read on a phone or tablet.",
        "slip_url": "Activation page:",
        "slip_warning": "The code works once — do not share it. A code not activated by the end of the month is lost.",
        "slip_contact": "Questions:",
        "imports_title": "Imports",
        "imports_intro": "Every import is all or nothing: a bad row changes nothing in the database, and the message names the file, row and column.",
        "import_codes": "Codes (a month's pool)",
        "import_codes_help": "XLSX, XLS, CSV or an HTML table from the platform's panel. The code column is found by its header.",
        "import_readers": "Readers",
        "import_readers_help": "CSV or XLSX with a header: card_number, first_name, last_name, email, valid_until, balance_due, overdue_items…",
        "import_activations": "Activation report",
        "import_activations_help": "The platform's report: a code column and an activation date (empty = not activated).",
        "column_optional": "Code column (optional)",
        "remove_missing": "This is a full export: remove readers not in the file",
        "import_submit": "Import", "import_failed": "Nothing was imported.",
        "recent_imports": "Recent imports",
        "done_readers": "{file}: {created} readers added, {updated} updated, {unchanged} unchanged.",
        "done_readers_removed": "{n} readers not in the file removed.",
        "done_codes": "{file}: {added} codes added ({service}, {month}).",
        "done_activations": "{file}: {activated} activated, {not_activated} not activated, {unknown} unknown.",
        "reports_title": "Monthly report",
        "reports_intro": "Per library, branch and service: codes issued, refusals by reason, activations, expired codes and the median reply time.",
        "download_xlsx": "Download XLSX", "branch_desk": "issued at the desk",
        "audit_title": "Audit log",
        "audit_intro": "Every staff action: who, when, what, and on which request.",
        "action_resend": "resent", "action_override": "code despite refusal",
        "action_handled": "marked as handled", "action_desk_issue": "issued at the desk",
        "action_import_readers": "reader import", "action_import_codes": "code import",
        "action_import_activations": "activation import",
        "action_withdraw_pool": "pool withdrawn",
        "withdraw": "Withdraw unissued", "withdraw_title": "Withdrawing a pool's unissued codes",
        "withdraw_will": "To be withdrawn: {n} (codes not issued yet). They leave the "
                         "system; a file of the right codes can be imported again after.",
        "withdraw_keeps": "Kept as they are: issued {issued}, expired {expired}.",
        "withdraw_confirm": "Withdraw these codes", "cancel": "Cancel", "back": "Back",
        "done_withdrawn": "Unissued codes withdrawn: {n}. The issued ones ({issued}) stay.",
        "err_no_pool": "There is no {service} pool for {month}.",
    },
}


def t(lang: str, key: str, **params: Any) -> str:
    text = MESSAGES[lang if lang in MESSAGES else "pl"][key]
    return text.format(**params) if params else text


def plural_form(lang: str, n: int) -> str:
    """``one``, ``few`` or ``many``: which form of a counted text ``n`` takes."""
    if n == 1:
        return "one"
    if lang == "pl" and n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14):
        return "few"
    return "many"


def tn(lang: str, key: str, n: int, **params: Any) -> str:
    """The counted text ``key`` for ``n`` (``{n}`` in it is the number)."""
    lang = lang if lang in MESSAGES else "pl"
    return t(lang, f"{key}_{plural_form(lang, n)}", n=n, **params)


def outcome_label(lang: str, outcome: str | None) -> str:
    if not outcome:
        return "—"
    return OUTCOMES[lang if lang in OUTCOMES else "pl"].get(outcome, outcome)


def rule_label(lang: str, rule: str) -> str:
    return RULES[lang if lang in RULES else "pl"].get(rule, rule)


def service_label(service: str | None) -> str:
    return SERVICES.get(service or "", service or "—")


def why_keys(lang: str) -> frozenset[str]:
    return frozenset(k for k in MESSAGES[lang] if k.startswith("why_"))
