"""The dashboard: a Starlette app with its routes in one table, server-rendered pages and a few lines of JavaScript.

Pages (board, roles, task, timeline, events) render from one read each; the live parts are server-sent events
(:mod:`agentd.web.streams`). Changes (retry, cancel, set status, answer a question, pause and resume roles) run the
CLI's own code through :class:`agentd.web.data.Source`, guarded by :class:`agentd.web.auth.Guard`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentd.core.clock import format_timestamp
from agentd.core.control import ALL
from agentd.core.listing import task_json
from agentd.core.model import index_by_id
from agentd.errors import AgentdError, TaskNotFound
from agentd.store.base import EVENT_TYPES, Filter
from agentd.web import streams, timeline, views
from agentd.web.auth import COOKIE, CSRF_FIELD, Guard
from agentd.web.data import Source
from agentd.web.metrics import registry

STATIC = Path(__file__).parent / "static"
EVENTS_SHOWN = 300
MAX_FORM = 64 * 1024  # bytes of a submitted form
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
BY = "dashboard"  # who answered, paused or resumed from the page, when the form does not say


def _env() -> Environment:
    env = Environment(loader=PackageLoader("agentd.web", "templates"), autoescape=select_autoescape(default=True))
    env.globals["cards_html"] = views.cards_html
    env.filters["tojson_pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return env


def create_app(source: Source, guard: Guard) -> Starlette:
    """The dashboard for one project."""
    env = _env()
    metrics = registry(source)
    roles = list(source.config.roles)

    def page(request: Request, template: str, *, status_code: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(template).render(
            request=request,
            csrf=guard.csrf(),
            csrf_field=CSRF_FIELD,
            read_only=guard.read_only,
            signed_in=guard.token is None or request.cookies.get(COOKIE) == guard.token,
            project=str(source.config.root),
            notice=request.query_params.get("notice"),
            **values,
        )
        return HTMLResponse(html, status_code=status_code)

    def problem(request: Request, status_code: int, text: str) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return page(request, "problem.html", status_code=status_code, text=text)
        return PlainTextResponse(text + "\n", status_code=status_code)

    # -- pages -------------------------------------------------------------------------------------------------------

    def board_columns() -> tuple[list[views.Column], str | None]:
        now = source.now()
        try:
            snapshot = source.snapshot()
        except AgentdError as exc:
            return [], str(exc)
        raw = index_by_id(snapshot.data)
        return views.board(snapshot.tasks, raw, source.leases(), source.config.workflow, now), None

    def board(request: Request) -> Response:
        columns, error = board_columns()
        types = sorted({card.type for column in columns for card in column.cards if card.type})
        return page(request, "board.html", columns=columns, error=error, roles=roles, types=types)

    def board_fragment(request: Request) -> Response:
        columns, error = board_columns()
        return page(request, "_board.html", columns=columns, error=error)

    def board_column(request: Request) -> Response:
        """The cards of one column (the final ones are fetched only when opened: most tasks of a long sprint)."""
        columns, error = board_columns()
        wanted = request.path_params["status"]
        found = next((column for column in columns if column.status == wanted), None)
        if found is None:
            return problem(request, 404, error or f"no column {wanted!r} on the board")
        return HTMLResponse(str(views.cards_html(found)))

    def roles_page(request: Request) -> Response:
        status = source.status()
        hosts = {str(p.path): p.info.host for p in source.probes() if p.info is not None}
        return page(request, "roles.html", status=status, hosts=hosts, problems=views.health(status, roles))

    def task_page(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            raw = source.task(task_id)
        except AgentdError as exc:
            return problem(request, 404 if isinstance(exc, TaskNotFound) else 500, str(exc))
        history = list(source.events(Filter(task=task_id)))
        lease = source.leases().get(task_id)
        running = lease.token if lease is not None and raw.get("status") in _working(source) else None
        return page(
            request,
            "task.html",
            task=raw,
            task_id=task_id,
            history=history,
            logs=source.run_logs(task_id),
            running=running,
            statuses=[s for s, _ in views.status_order(source.config.workflow, {str(raw.get("status"))})],
        )

    def run_log(request: Request) -> Response:
        try:
            path = source.run_log(request.path_params["task_id"], request.path_params["token"])
        except TaskNotFound as exc:
            return problem(request, 404, str(exc))
        try:
            return PlainTextResponse(path.read_bytes().decode("utf-8", errors="replace"))
        except OSError:
            return problem(request, 404, f"{path}: no such log")

    async def run_log_stream(request: Request) -> Response:
        try:
            path = source.run_log(request.path_params["task_id"], request.path_params["token"])
        except TaskNotFound as exc:
            return problem(request, 404, str(exc))
        stream = streams.tail(path, int(request.query_params.get("offset", "0") or 0))
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

    def timeline_page(request: Request) -> Response:
        hours = _hours(request)
        return page(request, "timeline.html", svg=_svg(hours), hours=hours)

    def timeline_svg(request: Request) -> Response:
        return Response(_svg(_hours(request)), media_type="image/svg+xml")

    def _svg(hours: float) -> str:
        return timeline.svg((event.data for event in source.events()), source.now(), hours=hours)

    def events_page(request: Request) -> Response:
        where = _filter(request)
        shown = list(source.events(where))[-EVENTS_SHOWN:]
        query = urlencode({k: v for k, v in request.query_params.items() if v})
        return page(
            request, "events.html", events=shown, types=EVENT_TYPES, roles=roles, query=query, **_asked(request)
        )

    async def events_stream(request: Request) -> Response:
        stream = streams.journal(source.journal_path, _filter(request))
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

    async def changes_stream(request: Request) -> Response:
        return StreamingResponse(streams.changes(source.signature), media_type="text/event-stream", headers=SSE_HEADERS)

    def login(request: Request) -> Response:
        given = request.query_params.get("token", "")
        if guard.token is None:
            return RedirectResponse("/", status_code=303)
        if given != guard.token:
            return problem(request, 403, "that login link's token is wrong (see .agentd/web.token)")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, given, httponly=True, samesite="strict", max_age=30 * 86400)
        return response

    # -- changes -----------------------------------------------------------------------------------------------------

    async def write_form(request: Request) -> dict[str, str] | Response:
        """The submitted form of a change, or the response refusing it (too large, no token or CSRF, read-only)."""
        body = await request.body()
        if len(body) > MAX_FORM:
            return problem(request, 413, f"the form is larger than {MAX_FORM} bytes")
        form = {key: values[-1] for key, values in parse_qs(body.decode("utf-8", errors="replace")).items()}
        refused = guard.refuse_write(request.headers, request.cookies, form.get(CSRF_FIELD), request.url.netloc)
        if refused is not None:
            return problem(request, 403, refused)
        return form

    def done_response(request: Request, where: str, done: str) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"{where}?{urlencode({'notice': done})}", status_code=303)
        return JSONResponse({"ok": True, "message": done})

    async def action(request: Request) -> Response:
        form = await write_form(request)
        if isinstance(form, Response):
            return form
        task_id = request.path_params["task_id"]
        what = request.path_params["action"]
        note = _text(form.get("note"))
        status = _text(form.get("status"))
        try:
            if what == "retry":
                done = f"{task_id}: back to {await run_in_threadpool(source.retry, task_id)} (attempts reset)"
            elif what == "cancel":
                done = f"{task_id}: {await run_in_threadpool(source.cancel, task_id, note)}"
            elif what == "status" and status:
                old = await run_in_threadpool(source.set_status, task_id, status, note)
                done = f"{task_id}: {old} -> {status}"
            elif what == "answer" and (text := (form.get("answer") or "").strip()):
                by = _text(form.get("by")) or BY
                answered = await run_in_threadpool(source.answer, task_id, text, by)
                done = f"{task_id}: answered; back to {answered.status} ({answered.role} resumes it first)"
            else:
                known = "retry, cancel, status with a status, answer with an answer"
                return problem(request, 400, f"unknown action {what!r} ({known})")
        except AgentdError as exc:
            return problem(request, 404 if isinstance(exc, TaskNotFound) else 409, str(exc))
        return done_response(request, f"/tasks/{quote(task_id)}", done)

    async def role_action(request: Request) -> Response:
        """Pause a role (``*``: every role) with a reason and an optional --for / --until, or resume it."""
        form = await write_form(request)
        if isinstance(form, Response):
            return form
        role = request.path_params["role"]
        names = [] if role == ALL else [role]
        shown = "every role" if role == ALL else role
        by = _text(form.get("by")) or BY
        what = request.path_params["action"]
        try:
            if what == "pause":
                reason = (form.get("reason") or "").strip()
                made = await run_in_threadpool(
                    source.pause, names, _text(form.get("for")), _text(form.get("until")), reason, by
                )
                end = made[0].until if made else None
                span = f"until {format_timestamp(end)}" if end else "until resumed"
                done = f"paused {shown} {span}" + (f" ({reason})" if reason else "")
            elif what == "resume":
                resumed = await run_in_threadpool(source.resume, names, by)
                lifted = ", ".join("every role" if p.role == ALL else p.role for p in resumed.lifted)
                done = f"resumed {lifted}" if lifted else f"{shown}: not paused"
                if resumed.everyone is not None:
                    done += "; a pause of every role is still in force (resume every role to lift it)"
            else:
                return problem(request, 400, f"unknown action {what!r} (pause, resume)")
        except ValueError as exc:  # a bad --for or --until, as `agentd pause` says it
            return problem(request, 400, str(exc))
        except AgentdError as exc:
            return problem(request, 404 if isinstance(exc, LookupError) else 409, str(exc))
        return done_response(request, "/roles", done)

    # -- machines ----------------------------------------------------------------------------------------------------

    def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    def healthz(request: Request) -> Response:
        problems = views.health(source.status(), roles)
        body = {"ok": not problems, "problems": problems, "time": format_timestamp(source.now())}
        return JSONResponse(body, status_code=503 if problems else 200)

    def api_status(request: Request) -> Response:
        return JSONResponse(source.status())

    def api_tasks(request: Request) -> Response:
        try:
            snapshot = source.snapshot()
            return JSONResponse([task_json(task, snapshot.quarantined) for task in snapshot.tasks])
        except AgentdError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)

    def api_task(request: Request) -> Response:
        try:
            return JSONResponse(source.task(request.path_params["task_id"]))
        except AgentdError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404 if isinstance(exc, TaskNotFound) else 503)

    routes = [
        Route("/", board),
        Route("/board/fragment", board_fragment),
        Route("/board/column/{status}", board_column),
        Route("/roles", roles_page),
        Route("/tasks/{task_id}", task_page),
        Route("/tasks/{task_id}/logs/{token:int}", run_log),
        Route("/tasks/{task_id}/logs/{token:int}/stream", run_log_stream),
        Route("/tasks/{task_id}/{action}", action, methods=["POST"]),
        Route("/roles/{role}/{action}", role_action, methods=["POST"]),
        Route("/timeline", timeline_page),
        Route("/timeline.svg", timeline_svg),
        Route("/events", events_page),
        Route("/stream/changes", changes_stream),
        Route("/stream/events", events_stream),
        Route("/login", login),
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
        Route("/api/status", api_status),
        Route("/api/tasks", api_tasks),
        Route("/api/tasks/{task_id}", api_task),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    return Starlette(routes=routes, middleware=[Middleware(ReadGuard, guard=guard)])


class ReadGuard:
    """Refuses every request but the login and the health check when reads need the token; sets safety headers."""

    OPEN = ("/login", "/healthz")

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if request.url.path not in self.OPEN and not self.guard.may_read(request.headers, request.cookies):
            refused = PlainTextResponse("this dashboard needs the token: open the login link\n", status_code=401)
            await refused(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")  # no-referrer would make forms send Origin: null
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _working(source: Source) -> set[str]:
    return {role.working for role in source.config.roles.values()}


def _hours(request: Request) -> float:
    try:
        return min(max(float(request.query_params.get("hours", "8")), 0.1), 24 * 14)
    except ValueError:
        return 8.0


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _asked(request: Request) -> dict[str, Any]:
    return {key: request.query_params.get(key, "") for key in ("role", "task", "type")}


def _filter(request: Request) -> Filter:
    asked = _asked(request)
    return Filter(
        task=asked["task"] or None,
        role=asked["role"] or None,
        types=frozenset([asked["type"]]) if asked["type"] else frozenset(),
    )
