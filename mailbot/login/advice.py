"""What to do about a refused OAuth2 login, by the provider's error code.

Pure data and two look-ups: ``for_entra(code)`` (Microsoft Entra ID's ``AADSTS…`` codes),
``for_google(error, description)`` (Google's OAuth2 ``error`` and its description), and
``server_refused(auth)`` for a token the identity provider issued but the IMAP or SMTP
server refused. The texts name the admin portal's menus as they were in 2026; they say
where to look, never what the secret is.
"""

from __future__ import annotations

ENTRA = "Microsoft Entra ID"
GOOGLE = "Google"

_APP = "Entra admin center → App registrations → the app"

_ENTRA: dict[str, str] = {
    # The secret's expiry date passed (secrets live at most 24 months).
    "AADSTS7000222": f"the client secret has expired: {_APP} → Certificates & secrets → "
                     "New client secret, then put its Value where client_secret_env or "
                     "client_secret_file points (a file is read again at the next login)",
    "AADSTS7000215": f"the client secret is wrong: copy the secret's Value (not its "
                     f"Secret ID) from {_APP} → Certificates & secrets, or make a new one",
    "AADSTS7000216": f"no secret or certificate was accepted: {_APP} → Certificates & "
                     "secrets, and set client_secret_env, client_secret_file or "
                     "certificate_file",
    "AADSTS700027": f"the certificate is not the app's: upload its public part in {_APP} "
                    "→ Certificates & secrets → Certificates, and set "
                    "certificate_thumbprint to its SHA-1 thumbprint",
    "AADSTS700024": "the certificate's signed assertion is outside its valid time: check "
                    "this machine's clock (NTP)",
    "AADSTS700016": "the application (client) id is not known in this tenant: check "
                    f"client_id and tenant against {_APP} → Overview (Application (client) "
                    "ID, Directory (tenant) ID)",
    "AADSTS90002": "the tenant does not exist: set tenant to the Directory (tenant) ID "
                   f"from {_APP} → Overview, or the tenant's primary domain",
    "AADSTS900023": "the tenant is not a valid tenant id or domain: set tenant to the "
                    f"Directory (tenant) ID from {_APP} → Overview",
    "AADSTS50173": "the grant was revoked (a password change or a revoked session): make "
                   f"a new client secret in {_APP} → Certificates & secrets and grant "
                   "admin consent again under API permissions",
    "AADSTS65001": f"the app has no admin consent: {_APP} → API permissions → Add a "
                   "permission → APIs my organization uses → Office 365 Exchange Online → "
                   "Application permissions → IMAP.AccessAsApp and SMTP.SendAsApp, then "
                   "Grant admin consent",
    "AADSTS650057": f"the app lacks the permission for this resource: {_APP} → API "
                    "permissions → Office 365 Exchange Online → Application permissions → "
                    "IMAP.AccessAsApp and SMTP.SendAsApp, then Grant admin consent",
    "AADSTS70011": "the scope is not valid: leave scope unset (it is "
                   "https://outlook.office365.com/.default for client credentials)",
    "AADSTS7000112": f"the application is disabled: {_APP} (or Enterprise applications → "
                     "the app → Properties → Enabled for users to sign-in)",
    "AADSTS500011": "Exchange Online is not known in this tenant: the tenant needs an "
                    "Exchange Online subscription; check scope",
}

_GOOGLE_SA = ("Google Cloud console → IAM & Admin → Service accounts → the account → Keys → "
              "Add key → JSON, and put the file where service_account_file points")
_DELEGATION = ("Google Admin console → Security → Access and data control → API controls "
               "→ Domain-wide delegation → Add new: the service account's client ID "
               "(client_id in its JSON key) with the scope https://mail.google.com/")

# (error, a piece of the description) -> advice; the first match wins, "" matches any.
_GOOGLE: tuple[tuple[str, str, str], ...] = (
    ("invalid_grant", "signature", "the service account key was deleted or disabled: "
                                   + _GOOGLE_SA),
    ("invalid_grant", "email or user id", "the mailbox (subject) is not a user of this "
                                          "Google Workspace, or is suspended: check "
                                          "subject (by default the login username)"),
    ("invalid_grant", "time", "the signed assertion is outside its valid time: check "
                              "this machine's clock (NTP)"),
    ("invalid_grant", "", "the service account's grant was refused (key deleted or "
                          "revoked, or an unknown subject): " + _GOOGLE_SA
                          + "; check subject"),
    ("unauthorized_client", "", "domain-wide delegation is missing for this scope: "
                                + _DELEGATION),
    ("access_denied", "", "an admin policy blocks the service account: Google Admin "
                          "console → Security → Access and data control → API controls → "
                          "App access control, and " + _DELEGATION),
    ("admin_policy_enforced", "", "an admin policy blocks the service account: Google "
                                  "Admin console → Security → Access and data control → "
                                  "API controls → App access control"),
    ("invalid_client", "", "the service account was deleted or disabled: Google Cloud "
                           "console → IAM & Admin → Service accounts"),
    ("invalid_scope", "", "the scope is not valid: leave scope unset (it is "
                          "https://mail.google.com/)"),
)

_SERVER_REFUSED = {
    "oauth2-microsoft": (
        "the token was issued but Exchange Online refused it for this mailbox: register "
        "the app in Exchange Online PowerShell (New-ServicePrincipal -AppId <client_id> "
        "-ObjectId <the Enterprise application's object id>) and give it the mailbox "
        "(Add-MailboxPermission -Identity <mailbox> -User <that object id> -AccessRights "
        "FullAccess); for SMTP also Set-CASMailbox -Identity <mailbox> "
        "-SmtpClientAuthenticationDisabled $false; check that the username is the "
        "mailbox's address (changes can take up to an hour)"),
    "oauth2-google": (
        "the token was issued but Gmail refused it: check that the username is the "
        "delegated user (subject), that IMAP is on for the user (Google Admin console → "
        "Apps → Google Workspace → Gmail → End user access) and " + _DELEGATION),
}


def for_entra(code: str) -> str:
    """Advice for an Entra ID error code (``AADSTS7000222``); a generic pointer else."""
    if code in _ENTRA:
        return _ENTRA[code]
    if code:
        number = code.removeprefix("AADSTS")
        return (f"look the code up at https://login.microsoftonline.com/error?code={number}"
                f" and check {_APP}")
    return f"check tenant, client_id and the secret or certificate in {_APP}"


def for_google(error: str, description: str) -> str:
    """Advice for Google's OAuth2 ``error`` (``invalid_grant`` …) and its description."""
    text = description.lower()
    for name, piece, advice in _GOOGLE:
        if name == error and piece in text:
            return advice
    return "check the service account key (service_account_file) and " + _DELEGATION


def server_refused(auth: str) -> str:
    """Advice for a fresh token that the IMAP or SMTP server refused."""
    return _SERVER_REFUSED[auth]
