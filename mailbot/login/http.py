"""The HTTP session msal and google-auth fetch tokens with.

It verifies the identity provider's certificate against ``ca_file`` when one is set, also
where ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` is set in the environment: requests
lets those override a session's own ``verify`` (requests' ``merge_environment_settings``),
which would silently drop a library's own CA. Without ``ca_file`` the environment and the
system's CAs apply as usual, and so do proxy variables (HTTPS_PROXY) either way.
"""

from __future__ import annotations

import functools
from typing import Any

import requests
from requests.adapters import HTTPAdapter


class _Session(requests.Session):
    def __init__(self, ca_file: str | None) -> None:
        super().__init__()
        self.ca_file = ca_file
        if ca_file:
            self.verify = ca_file

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.ca_file and verify is None:
            settings["verify"] = self.ca_file
        return settings


def session(ca_file: str | None, timeout: float) -> requests.Session:
    """A session verifying against ``ca_file`` (else the system's CAs), every request
    with ``timeout`` seconds, one retry of a failed connection (what msal sets up for a
    session of its own)."""
    s = _Session(ca_file)
    adapter = HTTPAdapter(max_retries=1)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    s.request = functools.partial(s.request, timeout=timeout)  # type: ignore[method-assign]
    return s
