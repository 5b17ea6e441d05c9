"""GET and HEAD of `/assets/…` without Starlette's middleware stack.

The byte-serving routes are the ones a browser or a proxy hits thousands of times a second.
Going through Starlette's stack (ServerErrorMiddleware → ExceptionMiddleware → Router →
request_response, each wrapping `send`) cost about as much as the handler itself. Here the
same `Route` objects match the path (Starlette's own matching: identical path parameters),
the same endpoints run with the same `Request`, and their errors get the same JSON answers
as the application's exception handlers give (`serve.errors.answer_for`); every other
request goes to Starlette unchanged. `scope["route"]` is set as the Router sets it, so the
access log and /metrics see the route template.

The routes handled here must be the first of the application's routes (so matching them
first chooses what the Router would) and accept GET and HEAD.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from serve.errors import answer_for


class AssetsFastPath:
    def __init__(self, app: Starlette, routes: list[Route]) -> None:
        if app.routes[:len(routes)] != routes or any(not {"GET", "HEAD"} <= (route.methods or set()) for route in routes):
            raise ValueError("the fast path's routes must be the application's first, for GET and HEAD")
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope["app"] = self.app
                    scope["route"] = route
                    scope.update(child_scope)
                    await self._answer(route, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        request = Request(scope, receive, send)
        try:
            try:
                response = await route.endpoint(request)
            except Exception as error:
                response = answer_for(error, head=scope["method"] == "HEAD")
                if response is None:
                    raise
            await response(scope, receive, sending)
        except Exception:
            # as Starlette's ServerErrorMiddleware: a plain 500 when nothing was sent yet, and
            # the error goes on to uvicorn, which logs it
            if not started:
                await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise
