"""The dashboard's pages, one module per page group, and the route table.

Each page is a plain function ``(ctx, **path params) -> Response`` wrapped by
web.context.page; every query is limited to the user's libraries and anything outside
them is answered 404 (direct URLs and forms alike).
"""

from __future__ import annotations

from starlette.routing import Route

from mailbot.web.views import (accounts, audit, desk, guide, imports, login, pools, queue,
                               password, reports, requests, texts)


def routes() -> list[Route]:
    return [
        Route("/", queue.home),
        Route("/login", login.login, methods=["GET", "POST"]),
        Route("/logout", login.logout, methods=["POST"]),
        Route("/queue", queue.queue),
        Route("/queue/live", queue.queue_live),
        Route("/requests", requests.request_list),
        Route("/requests/{request_id:int}", requests.request_detail),
        Route("/requests/{request_id:int}/mail.html", requests.mail_html),
        Route("/requests/{request_id:int}/resend", requests.request_resend, methods=["POST"]),
        Route("/requests/{request_id:int}/override", requests.request_override,
              methods=["POST"]),
        Route("/requests/{request_id:int}/handled", requests.request_handled,
              methods=["POST"]),
        Route("/pools", pools.pools),
        Route("/pools/withdraw", pools.pool_withdraw, methods=["GET", "POST"]),
        Route("/desk", desk.desk, methods=["GET", "POST"]),
        Route("/desk/slip/{code_id:int}", desk.desk_slip),
        Route("/imports", imports.imports, methods=["GET", "POST"]),
        Route("/imports/confirm", imports.import_confirm, methods=["POST"]),
        Route("/reports", reports.reports),
        Route("/reports/download", reports.report_download),
        Route("/audit", audit.audit_log),
        Route("/accounts", accounts.accounts),
        Route("/accounts", accounts.account_action, methods=["POST"]),
        Route("/accounts/remove", accounts.account_remove),
        Route("/password", password.password, methods=["GET", "POST"]),
        Route("/texts", texts.texts),
        Route("/texts/{library}/{outcome}.html", texts.text_html),
        Route("/pomoc", guide.guide),
        Route("/pomoc/zrzuty/{name:str}", guide.guide_image),
    ]
