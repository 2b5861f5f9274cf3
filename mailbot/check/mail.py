"""The mailboxes: log in (intake's own ``connect``, so OAuth2 too), the folder mail is
read from, and the folders handled mail goes to (``--create-folders`` makes missing ones).
A Maildir: its directory is there, is a Maildir and is writable."""

from __future__ import annotations

import mailbox
import os
from pathlib import Path

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from mailbot.check.items import Failed
from mailbot.config import MailboxSettings
from mailbot.intake.imap import Folders, connect
from mailbot.login.failures import IdentityUnreachable

_HINT = ("(`mailbot check --create-folders` creates missing folders; so does the first mail "
         "moved there)")


def check_mailbox(mb: MailboxSettings, *, create_folders: bool) -> str:
    if mb.type == "maildir":
        return _maildir(mb, create_folders=create_folders)
    return _imap(mb, create_folders=create_folders)


def _imap(mb: MailboxSettings, *, create_folders: bool) -> str:
    try:
        client = connect(mb)  # an AuthFailure says it all (deadline.outcome)
    except IdentityUnreachable as exc:
        raise Failed(f"cannot get an OAuth2 token: {exc}") from None
    except (OSError, IMAPClientError) as exc:
        raise Failed(f"cannot reach {mb.host}:{mb.port}: {type(exc).__name__}: {exc}") from None
    try:
        return _folders(client, mb, create_folders=create_folders)
    except (IMAPClientError, OSError) as exc:
        raise Failed(f"logged in, then {type(exc).__name__}: {exc}") from None
    finally:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - only saying goodbye
            pass


def _folders(client: IMAPClient, mb: MailboxSettings, *, create_folders: bool) -> str:
    folders = Folders(client)
    problems, created, hint = [], [], ""
    # Named as intake names them: the folder mail is read from as configured
    # (intake.imap.open_folder), the folders mail goes to in the server's delimiter.
    if not client.folder_exists(mb.folder):
        problems.append(f"the folder {mb.folder!r} (folder) does not exist")
        count = None
    else:
        count = int(client.select_folder(mb.folder, readonly=True)[b"EXISTS"])
    for key, name in (("manual_folder", mb.manual_folder),
                      ("processed_folder", mb.processed_folder)):
        if name is None or client.folder_exists(folders.server_name(name)):
            continue
        if create_folders:
            folders.ensure(name)
            created.append(name)
        else:
            problems.append(f"the folder {name!r} ({key}) does not exist")
            hint = f" {_HINT}"
    if problems:
        raise Failed("logged in, but " + "; ".join(problems) + hint)
    note = f"logged in; {mb.folder} holds {count} mail(s)"
    return note + (f"; created {', '.join(created)}" if created else "")


def _maildir(mb: MailboxSettings, *, create_folders: bool) -> str:
    root = Path(mb.path or "")
    if not root.is_dir():
        if not create_folders:
            raise Failed(f"no directory {root} (`mailbot check --create-folders` creates it)")
        mailbox.Maildir(root, create=True)
    missing = [d for d in ("cur", "new", "tmp") if not (root / d).is_dir()]
    if missing:
        raise Failed(f"{root} is not a Maildir (no {', '.join(missing)})")
    unwritable = [str(p) for p in (root, root / "cur", root / "new", root / "tmp")
                  if not os.access(p, os.W_OK)]
    if unwritable:
        raise Failed(f"not writable for this user: {', '.join(unwritable)}")
    problems, created = [], []
    for key, name in (("manual_folder", mb.manual_folder),
                      ("processed_folder", mb.processed_folder)):
        # Maildir++, as intake/maildir.py moves mail: "mailbot/manual" is ".mailbot.manual".
        if name is None or (root / f".{name.replace('/', '.')}").is_dir():
            continue
        if create_folders:
            mailbox.Maildir(root, create=False).add_folder(name.replace("/", "."))
            created.append(name)
        else:
            problems.append(f"the folder {name!r} ({key}) does not exist")
    if problems:
        raise Failed("; ".join(problems) + f" {_HINT}")
    count = sum(1 for d in ("new", "cur") for _ in os.scandir(root / d))
    note = f"Maildir {root} writable; {count} mail(s) in it"
    return note + (f"; created {', '.join(created)}" if created else "")
