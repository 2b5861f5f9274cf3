"""The staff dashboard: a small Starlette app with server-rendered Jinja2 pages.

``app`` builds the application (middleware, error pages), ``context`` what every page
handler gets (``Ctx``, the ``page`` decorator), ``forms`` reads a POST within its size cap,
``auth`` holds logins, sessions, CSRF and the lock-out, ``staff_accounts`` the managing of
accounts, ``views/`` the pages (one module a page group, the route table in
``views/__init__``), ``queries`` what the pages read (``requests_list``: the requests list),
``actions`` what staff may do to a request, ``charts`` the server-side SVG charts, ``i18n``
the Polish and English texts, ``server`` runs it under uvicorn in a thread (``mailbot run``)
or in the foreground (``mailbot demo``).
"""
