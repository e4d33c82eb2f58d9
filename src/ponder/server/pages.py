"""The live pages of traced requests: ``GET /ui/{id}`` (the page, polling while the request
runs) and ``GET /ui/{id}/data`` (what it redraws from), behind the API key."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from ponder.server.errors import ApiError
from ponder.server.views import LiveView, ViewStore
from ponder.view import render_page
from ponder.view.page import content_security_policy


class Pages:
    """The page routes of :class:`~ponder.server.app.PonderServer`."""

    views: ViewStore

    async def _live(self, request: Request) -> LiveView:
        self._authorize_view(request)
        view = self.views.get(str(request.path_params.get("view_id", "")))
        if view is None:  # unknown, expired, or not an id: the same answer
            raise ApiError(404, "no such page: it may have expired", code="not_found")
        return view

    async def ui_page(self, request: Request) -> Response:
        """A traced request's page: live while it runs (the page polls ``data``)."""
        try:
            view = await self._live(request)
        except ApiError as exc:
            return exc.response()
        live = {"data": f"{request.url.path}/data", "interval": 1000}
        page = render_page(view.views(), title=f"{view.strategy} · live",
                           live=live if view.status == "running" else None)
        return HTMLResponse(page, headers=self._page_headers(live=view.status == "running"))

    async def ui_data(self, request: Request) -> Response:
        """What the live page redraws from."""
        try:
            view = await self._live(request)
        except ApiError as exc:
            return exc.response()
        live = {"data": request.url.path, "interval": 1000}
        body = {"views": view.views(), "selected": 0, "title": f"{view.strategy} · live",
                "live": live, "generator": "ponder serve · live"}
        return JSONResponse(body, headers={"Cache-Control": "no-store",
                                           "X-Content-Type-Options": "nosniff"})

    @staticmethod
    def _page_headers(live: bool) -> dict[str, str]:
        return {"Content-Security-Policy": content_security_policy(live=live),
                "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
