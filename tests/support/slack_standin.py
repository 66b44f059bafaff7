"""A local stand-in for the Slack Web API, plus helpers that drive the bot the way Slack does.

The bot's real ``AsyncWebClient(token=..., base_url=standin.api_url)`` talks to
:class:`SlackStandIn` unmodified, so tests exercise the client's own request encoding, retry
handlers and error handling instead of a mock of them.  That matters because the SDK does not
send every method the same way (see ``_decode``): ``chat.postMessage``/``chat.update``/
``views.*`` go out as JSON bodies with ``Authorization: Bearer``; ``conversations.history``,
``users.info`` and friends are GETs with a query string; ``auth.test``,
``files.completeUploadExternal`` and ``reactions.add`` are POSTs whose arguments sit in the
query string over an empty form body; and anything sent through ``api_call(data=...)`` is a form.

Where Slack is strict the stand-in is strict too, because those are the mistakes a lenient fake
hides: a JSON body is read only by the methods in :data:`JSON_METHODS` (anything else ignores
it and fails on the missing arguments), only ``chat.postMessage``/``chat.postEphemeral``
accept ``#name`` channels (everything else needs the ID the post returned), a missing token is
``not_authed`` and a wrong one ``invalid_auth``, history omits ``metadata`` unless
``include_all_metadata`` is set, history lists thread parents but not their replies, block and
modal limits are checked, and failures come back as HTTP 200 ``{"ok": false}`` bodies exactly
where Slack sends them.

The second half of the module builds signed interactivity, view-submission and slash-command
requests shaped like the ones Slack sends to the bot's own endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import mimetypes
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

TEAM_ID = "T0CROWSNST"
TEAM_DOMAIN = "crowsnest-test"
TEAM_NAME = "Crow's Nest Test"
APP_ID = "A0CROWSNST"
BOT_ID = "B0CROWSNST"
BOT_USER_ID = "U0CROWSNST"
BOT_NAME = "crowsnest"
#: The legacy verification token Slack still puts inside interactivity payloads.
VERIFICATION_TOKEN = "standin-verification-token"
#: Port 9 (discard) refuses at once, so a handler that calls ``respond()`` without the test
#: supplying ``standin.new_response_url()`` fails fast instead of reaching for the internet.
DEFAULT_RESPONSE_URL = "http://127.0.0.1:9/response_url/unset"

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
#: The pseudo-method name under which raw uploads to an ``upload_url`` are recorded.
UPLOAD_METHOD = "upload"
#: The pseudo-method name under which posts to a ``new_response_url()`` are recorded.
RESPONSE_URL_METHOD = "response_url"

# Form/query values that carry JSON. Only these are decoded, so a text like "[1, 2]" stays text.
_JSON_FIELDS = frozenset(
    {"attachments", "blocks", "files", "metadata", "unfurls", "user_auth_blocks", "view"}
)
#: Methods Slack takes a JSON body for: exactly those slack_sdk sends with ``json=``. Any other
#: method reads only the query string and form fields, and a JSON body is ignored, which is
#: what ``api_call("conversations.history", json=...)`` runs into against real Slack.
JSON_METHODS = frozenset(
    {
        "chat.postEphemeral",
        "chat.postMessage",
        "chat.scheduleMessage",
        "chat.unfurl",
        "chat.update",
        "views.open",
        "views.publish",
        "views.push",
        "views.update",
    }
)
_CONVERSATION_ID = re.compile(r"[CGD][A-Z0-9]+")
_USER_ID = re.compile(r"[UW][A-Z0-9]+")
_MESSAGE_LIMITS = {"blocks": 50, "text": 40_000, "section_text": 3000, "header_text": 150}
_VIEW_LIMITS = {"blocks": 100, "title": 24, "private_metadata": 3000, "callback_id": 255}


@dataclass
class Call:
    """One request the stand-in received, kept so tests can assert on what the bot sent."""

    method: str
    #: Decoded arguments: query string, form fields and JSON body merged; ``token`` removed.
    args: dict[str, Any]
    token: str | None
    #: The HTTP status the stand-in answered with.
    status: int
    #: The JSON the stand-in answered with (``{}`` for the raw upload endpoint).
    response: dict[str, Any] = field(default_factory=dict)
    http_verb: str = "POST"
    content_type: str = ""
    #: A JSON body sent to a method that does not read JSON (see :data:`JSON_METHODS`).
    ignored_json: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether Slack would count this as a success: HTTP 200 and ``"ok": true``."""
        return self.status == 200 and self.response.get("ok", False) is True


@dataclass
class _Failure:
    status: int
    retry_after: int | None
    error: str | None
    #: The call does its work (a post lands in history) and only then the answer fails.
    after_doing: bool = False


class _ApiError(Exception):
    """Raised by method implementations; becomes HTTP 200 ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.body: dict[str, Any] = {"ok": False, "error": error, **extra}


class ChannelMessages(dict[str, list[dict[str, Any]]]):
    """``channel ID -> messages`` that also accepts ``#name`` keys.

    Keys are always stored as the channel ID Slack would answer with, so a test that posted to
    ``#alerts`` can read ``messages["#alerts"]`` or ``messages[resp["channel"]]`` and get the same
    list. Reading an unknown channel creates its (empty) list, which also lets a test seed
    history before the bot looks at it.
    """

    def __init__(self, resolve: Callable[[str], str]) -> None:
        super().__init__()
        self._resolve = resolve

    def __getitem__(self, key: str) -> list[dict[str, Any]]:
        return super().__getitem__(self._resolve(key))

    def __missing__(self, key: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        super().__setitem__(key, messages)
        return messages

    def __setitem__(self, key: str, value: list[dict[str, Any]]) -> None:
        super().__setitem__(self._resolve(key), value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(self._resolve(key))

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(self._resolve(key), default)


def _digest(seed: str, length: int = 9) -> str:
    """Uppercase, stable, ID-shaped characters derived from ``seed``."""
    return hashlib.sha256(seed.encode()).hexdigest()[:length].upper()


def _ts_key(ts: str) -> tuple[int, int]:
    """Order Slack timestamps exactly: as (seconds, microseconds), never as floats."""
    seconds, _, fraction = str(ts).partition(".")
    return int(seconds), int((fraction + "000000")[:6])


def _truthy(value: Any) -> bool:
    """Slack's booleans: JSON true, or "1"/"true" in forms (the SDK sends params as "1"/"0")."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true"}


def _block_errors(blocks: Any, *, limit: int) -> list[str]:
    """The Block Kit limits a security bot most plausibly trips; Slack rejects these outright."""
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    errors: list[str] = []
    if len(blocks) > limit:
        errors.append(f"no more than {limit} items allowed [json-pointer:/blocks]")
    seen: set[str] = set()
    for index, block in enumerate(blocks):
        where = f"[json-pointer:/blocks/{index}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"missing required field: type {where}")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or len(block_id) > 255:
                errors.append(f"block_id must be a string of at most 255 characters {where}")
            elif block_id in seen:
                errors.append(f"duplicate block_id: {block_id} {where}")
            else:
                seen.add(block_id)
        text = block.get("text")
        text_value = text.get("text", "") if isinstance(text, dict) else ""
        if block["type"] == "section" and len(text_value) > _MESSAGE_LIMITS["section_text"]:
            errors.append(f"must be less than 3001 characters {where}/text")
        if block["type"] == "header" and len(text_value) > _MESSAGE_LIMITS["header_text"]:
            errors.append(f"must be less than 151 characters {where}/text")
    return errors


def _form_bytes(value: bytes | bytearray | web.FileField) -> bytes:
    """A non-text form value: a file part, or raw bytes."""
    return value.file.read() if isinstance(value, web.FileField) else bytes(value)


def _with_block_ids(blocks: list[dict[str, Any]], salt: str) -> list[dict[str, Any]]:
    """Give every block a ``block_id`` as Slack does when storing; interactivity echoes them."""
    stored = copy.deepcopy(blocks)
    for index, block in enumerate(stored):
        if "block_id" not in block:
            seed = f"{salt}:{index}:{json.dumps(block, sort_keys=True)}".encode()
            block["block_id"] = base64.b32encode(hashlib.sha256(seed).digest()).decode()[:5]
    return stored


class SlackStandIn:
    """An HTTP server speaking enough of the Slack Web API for the bot's real client.

    Construct, ``await start()``, point ``AsyncWebClient(base_url=standin.api_url)`` at it and
    ``await stop()`` at the end. Everything received is in :attr:`calls`; posted messages are in
    :attr:`messages`, uploaded bytes in :attr:`files`, opened modals in :attr:`views`.

    Message timestamps follow the wall clock, as Slack's do (unique and increasing, at least
    100 µs apart), because code under test computes ``oldest`` from real datetimes. Pass
    ``epoch=1_700_000_000`` for deterministic timestamps instead: "1700000000.000100",
    "1700000000.000200", ... regardless of the clock.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        users: dict[str, str] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        channel_members: dict[str, list[str]] | None = None,
        epoch: float | None = None,
    ) -> None:
        self.bot_token = bot_token
        #: user ID -> user name, answered by ``users.info``.
        self.users: dict[str, str] = dict(users or {})
        #: user group ID ("S...") -> member user IDs, answered by ``usergroups.users.list``.
        self.usergroups: dict[str, list[str]] = {k: list(v) for k, v in (usergroups or {}).items()}
        self.team_id = TEAM_ID
        self.team_domain = TEAM_DOMAIN
        self.bot_id = BOT_ID
        self.bot_user_id = BOT_USER_ID
        self.app_id = APP_ID

        self.calls: list[Call] = []
        self.messages = ChannelMessages(self.channel_id)
        #: channel ID -> ephemeral messages (never visible in history, as in Slack).
        self.ephemeral: dict[str, list[dict[str, Any]]] = {}
        #: file ID -> uploaded bytes.
        self.files: dict[str, bytes] = {}
        #: file ID -> the file object ``files.completeUploadExternal`` answered with.
        self.file_info: dict[str, dict[str, Any]] = {}
        #: One entry per ``files.completeUploadExternal``: file IDs, channel_id, thread_ts, ...
        self.uploads: list[dict[str, Any]] = []
        #: view ID -> the view as last opened/updated/pushed.
        self.views: dict[str, dict[str, Any]] = {}
        #: channel ID -> the name it was first addressed by (without "#").
        self.channel_names: dict[str, str] = {}
        #: channel ID -> member user IDs, answered by ``conversations.members``; the
        #: constructor also takes ``#name`` keys (and makes those channels exist).
        self.channel_members: dict[str, list[str]] = {
            self.channel_id(k): list(v) for k, v in (channel_members or {}).items()
        }
        #: TCP connections accepted so far: a client that keeps its connection alive opens one.
        self.connections = 0

        self._follow_clock = epoch is None
        self._clock_us = round((time.time() if epoch is None else epoch) * 1_000_000)
        self._serial = 0
        self._failures: dict[str, deque[_Failure]] = {}
        self._upload_slots: dict[str, dict[str, Any]] = {}
        self._response_urls: set[str] = set()
        self._extra_methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self._arrived = asyncio.Condition()

        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._pending_sock: socket.socket | None = None
        self._reopening: asyncio.Task[None] | None = None
        self._port: int | None = None
        self._down = False

        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.history": self._conversations_history,
            "conversations.list": self._conversations_list,
            "conversations.members": self._conversations_members,
            "conversations.replies": self._conversations_replies,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "reactions.add": self._reactions_add,
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/``; only valid after :meth:`start`."""
        if self._port is None:
            raise RuntimeError("SlackStandIn.start() has not been awaited")
        return f"http://127.0.0.1:{self._port}/"

    @property
    def api_url(self) -> str:
        """What to pass as ``AsyncWebClient(base_url=...)``."""
        return f"{self.base_url}api/"

    async def start(self) -> None:
        """Listen on a free 127.0.0.1 port.

        The listening socket is created here rather than by a ``TCPSite`` so that
        :meth:`go_down` can close it synchronously and :meth:`come_back` can re-bind the same
        port before returning.
        """
        if self._runner is not None:
            raise RuntimeError("SlackStandIn already started")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/v1/{key}", self._handle_upload)
        app.router.add_post("/response_url/{key}", self._handle_response_url)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = self._listen(0)
        self._port = sock.getsockname()[1]
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol_factory(), sock=sock
        )

    def _protocol_factory(self) -> Callable[[], asyncio.Protocol]:
        """The server's protocol, one per TCP connection, counted in :attr:`connections`."""
        assert self._runner is not None and self._runner.server is not None
        server = self._runner.server

        def connection() -> asyncio.Protocol:
            self.connections += 1
            return server()

        return connection

    async def stop(self) -> None:
        """Stop listening and close every connection; safe to call twice."""
        if self._reopening is not None:
            await self._reopening
            self._reopening = None
        self._down = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._pending_sock is not None:
            self._pending_sock.close()
            self._pending_sock = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> SlackStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def go_down(self) -> None:
        """Simulate Slack being unreachable: refuse new connections and reset open ones.

        The listening socket is closed (so connects get ECONNREFUSED, which aiohttp raises as
        ``ClientConnectorError``) and keep-alive connections are aborted (a reused pooled
        connection then fails with ``ServerDisconnectedError``). Nothing is recorded in
        :attr:`calls` while down, because no request ever arrives.
        """
        if self._down or self._runner is None:
            self._down = True
            return
        self._down = True
        if self._pending_sock is not None:
            # come_back() bound a socket that the event loop has not picked up yet.
            self._pending_sock.close()
            self._pending_sock = None
        if self._server is not None:
            self._server.close()
            self._server = None
        server = self._runner.server
        for handler in server.connections if server is not None else []:
            transport = handler.transport
            if transport is not None:
                transport.abort()

    def come_back(self) -> None:
        """Undo :meth:`go_down`, on the same port so existing clients keep working.

        The port is bound and listening before this returns, so a request made right after it
        is queued by the kernel and served once the event loop attaches the socket, never
        refused.
        """
        if not self._down or self._runner is None:
            return
        self._down = False
        sock = self._listen(self._port or 0)
        self._pending_sock = sock
        self._reopening = asyncio.get_running_loop().create_task(self._serve(sock))

    async def _serve(self, sock: socket.socket) -> None:
        if self._pending_sock is not sock or self._runner is None:
            return  # go_down() (or stop()) got there first and closed it
        self._pending_sock = None
        server = await asyncio.get_running_loop().create_server(self._protocol_factory(), sock=sock)
        if self._down:
            server.close()
        else:
            self._server = server

    @staticmethod
    def _listen(port: int) -> socket.socket:
        # create_server sets SO_REUSEADDR on POSIX, so re-binding after go_down() works even
        # while closed connections linger in TIME_WAIT.
        sock = socket.create_server(("127.0.0.1", port), backlog=128)
        sock.setblocking(False)
        return sock

    # ------------------------------------------------------------------ test-facing helpers

    def calls_to(self, method: str, ok_only: bool = True) -> list[Call]:
        """Calls of ``method`` in arrival order; by default only the ones that succeeded."""
        return [c for c in self.calls if c.method == method and (c.ok or not ok_only)]

    def fail_next(
        self,
        method: str,
        status: int,
        *,
        times: int = 1,
        retry_after: int | None = None,
        error: str | None = None,
        after_doing: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail, ahead of any argument checks.

        With ``after_doing`` the call is carried out first and only its answer fails, as when
        Slack posts a message and a gateway then answers 5xx: the message is in history.
        ``status=0`` answers nothing: the connection is cut (aiohttp raises
        ``ServerDisconnectedError``), as when it drops between request and response.

        ``status=429`` answers ``{"ok": false, "error": "ratelimited"}`` with ``Retry-After``
        when ``retry_after`` is given (slack_sdk's ``AsyncRateLimitErrorRetryHandler`` sleeps
        that many seconds plus up to one second of jitter). 5xx answers a JSON error body.
        ``status=200`` needs ``error`` and answers ``{"ok": false, "error": error}``, which is
        how Slack reports ``channel_not_found``, ``not_in_channel`` and friends. ``method`` may
        also be :data:`UPLOAD_METHOD` to fail the raw upload to an ``upload_url``.
        """
        if status == 200 and not error:
            raise ValueError("fail_next(status=200) needs error=..., or it would not fail")
        if times < 1:
            raise ValueError("times must be at least 1")
        queue = self._failures.setdefault(method, deque())
        queue.extend(_Failure(status, retry_after, error, after_doing) for _ in range(times))

    def register(self, method: str, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Answer an extra method with ``handler(args)``; raise nothing, return the JSON body."""
        self._extra_methods[method] = handler

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until at least ``count`` successful calls of ``method`` arrived; return them all.

        For code under test that calls Slack from a background task, where the test cannot
        simply await the call.
        """
        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: len(self.calls_to(method)) >= count)
        except TimeoutError:
            seen = [(c.method, c.status, c.response.get("error")) for c in self.calls]
            raise TimeoutError(
                f"waited {timeout}s for {count} ok {method} call(s), got "
                f"{len(self.calls_to(method))}; all calls so far: {seen}"
            ) from None
        return self.calls_to(method)

    def channel_id(self, channel: str) -> str:
        """The ID Slack would answer for ``channel``: IDs pass through, ``#name`` maps stably.

        A user ID maps to a stable DM ID ("D..."), as ``chat.postMessage(channel=user_id)``
        answers with the IM channel rather than the user.
        """
        channel = channel.strip()
        if _CONVERSATION_ID.fullmatch(channel):
            return channel
        if _USER_ID.fullmatch(channel):
            return "D" + _digest(f"im:{channel}")
        name = channel.removeprefix("#").lower()
        cid = "C" + _digest(f"channel:{name}")
        self.channel_names.setdefault(cid, name)
        return cid

    def add_message(
        self,
        channel: str,
        *,
        text: str = "",
        user: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
        thread_ts: str | None = None,
    ) -> dict[str, Any]:
        """Seed a message (the bot's own unless ``user`` is given) as if it had been posted."""
        message = self._new_message(
            self.channel_id(channel),
            text=text,
            blocks=blocks,
            attachments=None,
            metadata=metadata,
            thread_ts=thread_ts,
            user=user,
        )
        return message

    def new_response_url(self) -> str:
        """A live ``response_url`` for interactivity payloads; posts to it are recorded as calls
        of :data:`RESPONSE_URL_METHOD`, so ``respond()`` in a handler can be asserted on."""
        key = secrets.token_urlsafe(12)
        self._response_urls.add(key)
        return f"{self.base_url}response_url/{key}"

    # ------------------------------------------------------------------ HTTP plumbing

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        if self._down:
            return self._drop(request)
        method = request.match_info["method"]
        ignored: dict[str, Any] | None = None
        try:
            args, token, ignored = await self._decode(request, method)
        except ValueError:
            args, token, decode_failed = {}, None, True
        else:
            decode_failed = False
        headers: dict[str, str] = {}
        failure = self._take_failure(method)
        if failure is not None:
            if failure.after_doing and not decode_failed:
                self._dispatch(method, args, token)
            if failure.status == 0:
                await self._record(Call(method, args, token, 0, {}, request.method))
                return self._drop(request)
            status, body, headers = self._failure_response(failure)
        elif decode_failed:
            status, body = 200, {"ok": False, "error": "invalid_json"}
        else:
            status, body = 200, self._dispatch(method, args, token)
            if ignored is not None:
                # Not something Slack says; it just fails on the missing arguments. Said here
                # so the test failure points at the cause.
                body.setdefault("response_metadata", {}).setdefault("warnings", []).append(
                    f"standin: {method} does not read a JSON body, Slack ignores it; "
                    "send its arguments as params= or data="
                )
        await self._record(
            Call(
                method,
                args,
                token,
                status,
                body,
                request.method,
                request.content_type,
                ignored,
            )
        )
        return web.Response(
            status=status,
            text=json.dumps(body),
            headers={"Content-Type": JSON_CONTENT_TYPE, **headers},
        )

    def _dispatch(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        handler = self._methods.get(method) or self._extra_methods.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method", "req_method": method}
        if not token:
            return {"ok": False, "error": "not_authed"}  # Slack's answer to a missing token
        if token != self.bot_token:
            return {"ok": False, "error": "invalid_auth"}
        try:
            return handler(args)
        except _ApiError as exc:
            return exc.body

    async def _decode(
        self, request: web.Request, method: str | None = None
    ) -> tuple[dict[str, Any], str | None, dict[str, Any] | None]:
        """Merge query string, form fields and JSON body, the three places the SDK puts args.

        Returns the arguments, the token (``Authorization: Bearer`` first, then a ``token``
        field) and a JSON body that ``method`` does not read, if one was sent. Raises
        ValueError for a JSON body that does not parse to an object.
        """
        args: dict[str, Any] = {}
        ignored: dict[str, Any] | None = None
        for key in request.query:
            args[key] = request.query.getone(key)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("JSON body must be an object")
                if method is None or method in JSON_METHODS or method in self._extra_methods:
                    args.update(body)
                else:
                    ignored = body
            elif request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                form = await request.post()
                for key in form:
                    value = form.getone(key)
                    args[key] = value if isinstance(value, str) else _form_bytes(value)
        for key in _JSON_FIELDS & args.keys():
            value = args[key]
            if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
                # A value that does not parse stays a string, for the method to reject.
                with contextlib.suppress(ValueError):
                    args[key] = json.loads(value)
        token: str | None = None
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ").strip()
        form_token = args.pop("token", None)
        return args, token or (str(form_token) if form_token else None), ignored

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        return queue.popleft() if queue else None

    @staticmethod
    def _failure_response(failure: _Failure) -> tuple[int, dict[str, Any], dict[str, str]]:
        default = {429: "ratelimited", 503: "service_unavailable"}.get(
            failure.status, "internal_error" if failure.status >= 500 else "fatal_error"
        )
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = str(failure.retry_after)
        return failure.status, {"ok": False, "error": failure.error or default}, headers

    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        async with self._arrived:
            self._arrived.notify_all()

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        """Abort a request that slipped in on a keep-alive connection while down."""
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=503)

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        """The ``upload_url`` (files.slack.com in real life): unauthenticated, raw bytes in.

        Slack answers it with ``text/plain`` "OK - <size>", not JSON; slack_sdk has a special
        case for that content type, so the stand-in keeps it.
        """
        if self._down:
            return self._drop(request)
        slot = self._upload_slots.get(request.match_info["key"])
        data = await self._read_upload(request)
        args = {"file_id": slot["file_id"] if slot else None, "length": len(data)}
        failure = self._take_failure(UPLOAD_METHOD)
        if failure is not None:
            status, body, headers = self._failure_response(failure)
            await self._record(
                Call(UPLOAD_METHOD, args, None, status, body, "POST", request.content_type)
            )
            return web.Response(
                status=status,
                text=json.dumps(body),
                headers={"Content-Type": JSON_CONTENT_TYPE, **headers},
            )
        if slot is None:
            await self._record(
                Call(UPLOAD_METHOD, args, None, 404, {}, "POST", request.content_type)
            )
            return web.Response(status=404, text="Not Found", content_type="text/plain")
        self.files[slot["file_id"]] = data
        await self._record(
            Call(UPLOAD_METHOD, args, None, 200, {"ok": True}, "POST", request.content_type)
        )
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    @staticmethod
    async def _read_upload(request: web.Request) -> bytes:
        # slack_sdk posts the bytes as the whole body; curl -F and browsers send multipart.
        if request.content_type == "multipart/form-data":
            form = await request.post()
            for key in form:
                value = form.getone(key)
                if not isinstance(value, str):
                    return _form_bytes(value)
            return b""
        return await request.read()

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        if self._down:
            return self._drop(request)
        known = request.match_info["key"] in self._response_urls
        try:
            args, _, _ = await self._decode(request)
        except ValueError:
            args = {}
        status, body = (200, {"ok": True}) if known else (404, {"ok": False, "error": "no_hook"})
        await self._record(
            Call(RESPONSE_URL_METHOD, args, None, status, body, "POST", request.content_type)
        )
        return web.Response(
            status=status, text=json.dumps(body), headers={"Content-Type": JSON_CONTENT_TYPE}
        )

    # ------------------------------------------------------------------ storage helpers

    def _next_ts(self) -> str:
        self._clock_us += 100
        if self._follow_clock:
            self._clock_us = max(self._clock_us, time.time_ns() // 1000)
        return f"{self._clock_us // 1_000_000}.{self._clock_us % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        self._serial += 1
        return prefix + _digest(f"{prefix}:{self._serial}", 10)

    def _find(self, channel: str, ts: Any) -> dict[str, Any] | None:
        messages: list[dict[str, Any]] = self.messages.get(channel) or []
        for message in messages:
            if message["ts"] == ts:
                return message
        return None

    @staticmethod
    def _require_channel_id(args: dict[str, Any], key: str = "channel") -> str:
        """Newer methods take channel IDs only; a ``#name`` here is a bot bug Slack would catch."""
        channel = str(args.get(key) or "")
        if not channel:
            raise _ApiError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] missing required field: {key}"]},
            )
        if not _CONVERSATION_ID.fullmatch(channel):
            raise _ApiError("channel_not_found")
        return channel

    @staticmethod
    def _metadata(value: Any) -> dict[str, Any] | None:
        if value in (None, ""):
            return None
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("event_type"), str)
            or not isinstance(value.get("event_payload"), dict)
        ):
            raise _ApiError("invalid_metadata_format")
        return {"event_type": value["event_type"], "event_payload": value["event_payload"]}

    @staticmethod
    def _check_content(text: Any, blocks: Any, attachments: Any) -> None:
        if not (text or blocks or attachments):
            raise _ApiError("no_text")
        if text is not None and len(str(text)) > _MESSAGE_LIMITS["text"]:
            raise _ApiError("msg_too_long")
        if blocks is not None:
            errors = _block_errors(blocks, limit=_MESSAGE_LIMITS["blocks"])
            if errors:
                raise _ApiError(
                    "invalid_blocks",
                    errors=errors,
                    response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
                )

    def _new_message(
        self,
        channel: str,
        *,
        text: Any,
        blocks: Any,
        attachments: Any,
        metadata: dict[str, Any] | None,
        thread_ts: Any,
        user: str | None = None,
        broadcast: bool = False,
    ) -> dict[str, Any]:
        """Store a message the way Slack returns it from history (bot messages carry bot_id)."""
        ts = self._next_ts()
        message: dict[str, Any] = {"type": "message", "text": str(text or ""), "ts": ts}
        if user is None:
            message.update(
                user=self.bot_user_id, bot_id=self.bot_id, app_id=self.app_id, team=self.team_id
            )
        else:
            message.update(user=user, team=self.team_id)
        if blocks:
            message["blocks"] = _with_block_ids(blocks, ts)
        if attachments:
            message["attachments"] = copy.deepcopy(attachments)
        if metadata is not None:
            message["metadata"] = copy.deepcopy(metadata)
        if thread_ts:
            thread_ts = str(thread_ts)
            message["thread_ts"] = thread_ts
            parent = self._find(channel, thread_ts)
            if parent is not None:
                message["parent_user_id"] = parent.get("user")
                parent["thread_ts"] = thread_ts
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                parent["latest_reply"] = ts
                reply_users = parent.setdefault("reply_users", [])
                if message["user"] not in reply_users:
                    reply_users.append(message["user"])
                parent["reply_users_count"] = len(reply_users)
            if broadcast:
                message["subtype"] = "thread_broadcast"
        self.messages[channel].append(message)
        return message

    @staticmethod
    def _present(message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
        shown = copy.deepcopy(message)
        if not with_metadata:
            shown.pop("metadata", None)
        return shown

    # ------------------------------------------------------------------ methods

    def _api_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "args": args}

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{self.team_domain}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            raise _ApiError("channel_not_found")
        channel = self.channel_id(str(args["channel"]))
        self._check_content(args.get("text"), args.get("blocks"), args.get("attachments"))
        message = self._new_message(
            channel,
            text=args.get("text"),
            blocks=args.get("blocks"),
            attachments=args.get("attachments"),
            metadata=self._metadata(args.get("metadata")),
            thread_ts=args.get("thread_ts"),
            broadcast=_truthy(args.get("reply_broadcast", False)),
        )
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "message": self._present(message, with_metadata=True),
        }

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel_id(args)
        message = self._find(channel, args.get("ts"))
        if message is None:
            raise _ApiError("message_not_found")
        if message.get("bot_id") != self.bot_id:
            raise _ApiError("cant_update_message")
        self._check_content(args.get("text"), args.get("blocks"), args.get("attachments"))
        if "text" in args:
            message["text"] = str(args["text"] or "")
        if "blocks" in args:
            if args["blocks"]:
                message["blocks"] = _with_block_ids(args["blocks"], message["ts"])
            else:
                message.pop("blocks", None)
        if "attachments" in args:
            message["attachments"] = copy.deepcopy(args["attachments"])
        metadata = self._metadata(args.get("metadata"))
        if metadata is not None:
            message["metadata"] = metadata
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "text": message["text"],
            "message": self._present(message, with_metadata=True),
        }

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            raise _ApiError("channel_not_found")
        if not args.get("user"):
            raise _ApiError("user_not_found")
        channel = self.channel_id(str(args["channel"]))
        self._check_content(args.get("text"), args.get("blocks"), args.get("attachments"))
        ts = self._next_ts()
        self.ephemeral.setdefault(channel, []).append(
            {
                "user": args["user"],
                "text": str(args.get("text") or ""),
                "blocks": copy.deepcopy(args.get("blocks")),
                "thread_ts": args.get("thread_ts"),
                "message_ts": ts,
            }
        )
        return {"ok": True, "message_ts": ts}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel_id(args)
        message = self._find(channel, args.get("message_ts"))
        if message is None:
            raise _ApiError("message_not_found")
        link = f"https://{self.team_domain}.slack.com/archives/{channel}/p" + message["ts"].replace(
            ".", ""
        )
        if message.get("thread_ts") and message["thread_ts"] != message["ts"]:
            link += "?" + urlencode({"thread_ts": message["thread_ts"], "cid": channel})
        return {"ok": True, "channel": channel, "permalink": link}

    @staticmethod
    def _window(args: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int], bool, int]:
        """oldest, latest, inclusive and limit as Slack reads them (bounds exclusive by default)."""
        try:
            oldest = _ts_key(args.get("oldest") or "0")
        except ValueError:
            raise _ApiError("invalid_ts_oldest") from None
        try:
            latest = _ts_key(args["latest"]) if args.get("latest") else (2**62, 0)
        except ValueError:
            raise _ApiError("invalid_ts_latest") from None
        try:
            limit = int(args.get("limit") or 100)
        except ValueError:
            raise _ApiError("invalid_limit") from None
        return oldest, latest, _truthy(args.get("inclusive", False)), max(1, min(limit, 999))

    @staticmethod
    def _in_window(
        ts: str, oldest: tuple[int, int], latest: tuple[int, int], inclusive: bool
    ) -> bool:
        key = _ts_key(ts)
        if inclusive:
            return oldest <= key <= latest
        return oldest < key < latest

    @staticmethod
    def _page(
        messages: list[dict[str, Any]], args: dict[str, Any], limit: int
    ) -> tuple[list[dict[str, Any]], str]:
        """Cursor pagination; cursors look like Slack's (base64 of ``next_ts:<ts>``)."""
        start = 0
        if args.get("cursor"):
            try:
                decoded = base64.b64decode(str(args["cursor"])).decode()
                wanted = decoded.removeprefix("next_ts:")
                start = next(i for i, m in enumerate(messages) if m["ts"] == wanted)
            except (ValueError, StopIteration):
                raise _ApiError("invalid_cursor") from None
        page = messages[start : start + limit]
        rest = messages[start + limit :]
        cursor = base64.b64encode(f"next_ts:{rest[0]['ts']}".encode()).decode() if rest else ""
        return page, cursor

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel_id(args)
        oldest, latest, inclusive, limit = self._window(args)
        with_metadata = _truthy(args.get("include_all_metadata", False))
        visible = [
            m
            for m in self.messages.get(channel) or []
            if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"
            if self._in_window(m["ts"], oldest, latest, inclusive)
        ]
        visible.sort(key=lambda m: _ts_key(m["ts"]), reverse=True)  # newest first
        page, cursor = self._page(visible, args, limit)
        body: dict[str, Any] = {
            "ok": True,
            "messages": [self._present(m, with_metadata) for m in page],
            "has_more": bool(cursor),
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
        }
        if cursor:
            body["response_metadata"] = {"next_cursor": cursor}
        return body

    def _conversations_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """The channels this workspace has: every ``#name`` anything was posted to (or that a
        test made with :meth:`channel_id`), in id order, a page of ``limit`` at a time."""
        try:
            limit = max(1, min(int(args.get("limit") or 100), 1000))
        except ValueError:
            raise _ApiError("invalid_limit") from None
        ids = sorted(self.channel_names)
        start = 0
        if args.get("cursor"):
            try:
                wanted = base64.b64decode(str(args["cursor"])).decode().removeprefix("next_id:")
                start = ids.index(wanted)
            except ValueError:
                raise _ApiError("invalid_cursor") from None
        page, rest = ids[start : start + limit], ids[start + limit :]
        cursor = base64.b64encode(f"next_id:{rest[0]}".encode()).decode() if rest else ""
        channels = [
            {
                "id": cid,
                "name": self.channel_names[cid],
                "is_channel": True,
                "is_private": False,
                "is_archived": False,
                "is_member": True,
            }
            for cid in page
        ]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": cursor}}

    def _conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        """A channel's member user IDs, a page of ``limit`` at a time (Slack's default 100),
        with an opaque cursor in ``response_metadata.next_cursor`` ("" on the last page)."""
        channel = self._require_channel_id(args)
        if channel not in self.channel_members and channel not in self.channel_names:
            raise _ApiError("channel_not_found")
        try:
            limit = max(1, min(int(args.get("limit") or 100), 1000))
        except ValueError:
            raise _ApiError("invalid_limit") from None
        members = self.channel_members.get(channel, [])
        start = 0
        if args.get("cursor"):
            try:
                wanted = base64.b64decode(str(args["cursor"])).decode().removeprefix("user:")
                start = members.index(wanted)
            except ValueError:
                raise _ApiError("invalid_cursor") from None
        page, rest = members[start : start + limit], members[start + limit :]
        cursor = base64.b64encode(f"user:{rest[0]}".encode()).decode() if rest else ""
        return {"ok": True, "members": page, "response_metadata": {"next_cursor": cursor}}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel_id(args)
        message = self._find(channel, args.get("ts"))
        if message is None:
            raise _ApiError("thread_not_found")
        root = message.get("thread_ts") or message["ts"]
        oldest, latest, inclusive, limit = self._window(args)
        with_metadata = _truthy(args.get("include_all_metadata", False))
        thread = [
            m
            for m in self.messages.get(channel) or []
            if (m["ts"] == root or m.get("thread_ts") == root)
            and (m["ts"] == root or self._in_window(m["ts"], oldest, latest, inclusive))
        ]
        thread.sort(key=lambda m: _ts_key(m["ts"]))  # oldest first, parent at the top
        page, cursor = self._page(thread, args, limit)
        body: dict[str, Any] = {
            "ok": True,
            "messages": [self._present(m, with_metadata) for m in page],
            "has_more": bool(cursor),
        }
        if cursor:
            body["response_metadata"] = {"next_cursor": cursor}
        return body

    def _build_view(
        self,
        raw: Any,
        *,
        view_id: str,
        root_view_id: str,
        previous_view_id: str | None,
    ) -> dict[str, Any]:
        if not isinstance(raw, dict) or raw.get("type") not in ("modal", "home"):
            raise _ApiError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] invalid `view` type"]}
            )
        problems = _block_errors(raw.get("blocks", []), limit=_VIEW_LIMITS["blocks"])
        title = raw.get("title")
        if raw["type"] == "modal":
            if not isinstance(title, dict) or not title.get("text"):
                problems.append("missing required field: title [json-pointer:/view/title]")
            elif len(title["text"]) > _VIEW_LIMITS["title"]:
                problems.append("must be less than 25 characters [json-pointer:/view/title/text]")
        for key in ("private_metadata", "callback_id"):
            if len(str(raw.get(key, ""))) > _VIEW_LIMITS[key]:
                problems.append(f"{key} is too long [json-pointer:/view/{key}]")
        if problems:
            raise _ApiError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] {p}" for p in problems]},
            )
        external_id = str(raw.get("external_id", ""))
        if external_id and any(
            v["external_id"] == external_id and v["id"] != view_id for v in self.views.values()
        ):
            raise _ApiError("duplicate_external_id")
        view = {
            "id": view_id,
            "team_id": self.team_id,
            "type": raw["type"],
            "blocks": _with_block_ids(raw.get("blocks", []), view_id),
            "private_metadata": str(raw.get("private_metadata", "")),
            "callback_id": str(raw.get("callback_id", "")),
            "state": {"values": {}},
            "hash": f"{self._clock_us // 1_000_000}.{_digest(self._next_ts(), 8).lower()}",
            "title": copy.deepcopy(title),
            "clear_on_close": bool(raw.get("clear_on_close", False)),
            "notify_on_close": bool(raw.get("notify_on_close", False)),
            "close": copy.deepcopy(raw.get("close")),
            "submit": copy.deepcopy(raw.get("submit")),
            "previous_view_id": previous_view_id,
            "root_view_id": root_view_id,
            "app_id": self.app_id,
            "external_id": external_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        self.views[view_id] = view
        return view

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not (args.get("trigger_id") or args.get("interactivity_pointer")):
            raise _ApiError("invalid_trigger_id")
        view_id = self._next_id("V")
        view = self._build_view(
            args.get("view"), view_id=view_id, root_view_id=view_id, previous_view_id=None
        )
        return {"ok": True, "view": copy.deepcopy(view)}

    def _views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        if not (args.get("trigger_id") or args.get("interactivity_pointer")):
            raise _ApiError("invalid_trigger_id")
        below = next(reversed(self.views.values()), None)
        view_id = self._next_id("V")
        view = self._build_view(
            args.get("view"),
            view_id=view_id,
            root_view_id=below["root_view_id"] if below else view_id,
            previous_view_id=below["id"] if below else None,
        )
        return {"ok": True, "view": copy.deepcopy(view)}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        current: dict[str, Any] | None = None
        if args.get("view_id"):
            current = self.views.get(str(args["view_id"]))
        elif args.get("external_id"):
            current = next(
                (v for v in self.views.values() if v["external_id"] == args["external_id"]), None
            )
        else:
            raise _ApiError("invalid_arguments")
        if current is None:
            raise _ApiError("not_found")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise _ApiError("hash_conflict")
        raw = args.get("view")
        if isinstance(raw, dict) and args.get("external_id") and "external_id" not in raw:
            raw = {**raw, "external_id": args["external_id"]}
        view = self._build_view(
            raw,
            view_id=current["id"],
            root_view_id=current["root_view_id"],
            previous_view_id=current["previous_view_id"],
        )
        return {"ok": True, "view": copy.deepcopy(view)}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args.get("user") or "")
        if user_id == self.bot_user_id:
            name, is_bot = BOT_NAME, True
        elif user_id in self.users:
            name, is_bot = self.users[user_id], False
        else:
            raise _ApiError("user_not_found")
        return {
            "ok": True,
            "user": {
                "id": user_id,
                "team_id": self.team_id,
                "name": name,
                "deleted": False,
                "real_name": name,
                "tz": "Etc/UTC",
                "tz_offset": 0,
                "profile": {
                    "real_name": name,
                    "display_name": name,
                    "real_name_normalized": name,
                    "display_name_normalized": name,
                    "team": self.team_id,
                },
                "is_admin": False,
                "is_owner": False,
                "is_bot": is_bot,
                "is_app_user": False,
                "updated": self._clock_us // 1_000_000,
            },
        }

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = str(args.get("usergroup") or "")
        if group not in self.usergroups:
            raise _ApiError("no_such_subteam")
        return {"ok": True, "users": list(self.usergroups[group])}

    def _files_get_upload_url_external(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = args.get("filename")
        try:
            length = int(args.get("length", ""))
        except ValueError:
            raise _ApiError("invalid_arguments") from None
        if not filename or length < 0:
            raise _ApiError("invalid_arguments")
        file_id = self._next_id("F")
        key = secrets.token_urlsafe(16)
        self._upload_slots[key] = {"file_id": file_id, "filename": str(filename), "length": length}
        return {"ok": True, "upload_url": f"{self.base_url}upload/v1/{key}", "file_id": file_id}

    def _files_complete_upload_external(self, args: dict[str, Any]) -> dict[str, Any]:
        entries = args.get("files")
        if not isinstance(entries, list) or not entries:
            raise _ApiError("invalid_arguments")
        channel_id = args.get("channel_id")
        if channel_id:
            self._require_channel_id(args, "channel_id")
        if args.get("thread_ts") and not channel_id:
            raise _ApiError("invalid_arguments")
        slots = {slot["file_id"]: slot for slot in self._upload_slots.values()}
        objects = []
        for entry in entries:
            file_id = entry.get("id") if isinstance(entry, dict) else None
            if file_id not in self.files:
                raise _ApiError("file_not_found")
            name = slots[file_id]["filename"]
            mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            base = f"https://files.slack.com/files-pri/{self.team_id}-{file_id}/{name}"
            info = {
                "id": file_id,
                "created": self._clock_us // 1_000_000,
                "timestamp": self._clock_us // 1_000_000,
                "name": name,
                "title": entry.get("title") or name,
                "mimetype": mimetype,
                "filetype": name.rpartition(".")[2] if "." in name else "binary",
                "user": self.bot_user_id,
                "user_team": self.team_id,
                "size": len(self.files[file_id]),
                "mode": "hosted",
                "is_external": False,
                "is_public": bool(channel_id),
                "url_private": base,
                "url_private_download": base.replace("/files-pri/", "/files-pri/download/"),
                "permalink": f"https://{self.team_domain}.slack.com/files/{self.bot_user_id}/"
                f"{file_id}/{name}",
                # Slack shares files asynchronously, so the completion answer shows no shares.
                "shares": {},
                "channels": [],
                "groups": [],
                "ims": [],
            }
            self.file_info[file_id] = info
            objects.append(info)
        self.uploads.append(
            {
                "files": [o["id"] for o in objects],
                "channel_id": channel_id,
                "channels": args.get("channels"),
                "thread_ts": args.get("thread_ts"),
                "initial_comment": args.get("initial_comment"),
            }
        )
        return {"ok": True, "files": copy.deepcopy(objects)}

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel_id(args)
        message = self._find(channel, args.get("timestamp"))
        if message is None:
            raise _ApiError("message_not_found")
        name = str(args.get("name") or "").strip(":")
        if not re.fullmatch(r"[a-z0-9_+'-]+(::skin-tone-[2-6])?", name):
            raise _ApiError("invalid_name")
        reactions = message.setdefault("reactions", [])
        for reaction in reactions:
            if reaction["name"] == name:
                if self.bot_user_id in reaction["users"]:
                    raise _ApiError("already_reacted")
                reaction["users"].append(self.bot_user_id)
                reaction["count"] += 1
                break
        else:
            reactions.append({"name": name, "users": [self.bot_user_id], "count": 1})
        return {"ok": True}


# ---------------------------------------------------------------------- requests to the bot


def signed_headers(
    body: bytes,
    signing_secret: str,
    *,
    timestamp: int | None = None,
    content_type: str = "application/x-www-form-urlencoded",
) -> dict[str, str]:
    """Headers Slack adds to every request it sends the app, signed over ``body``.

    Pass an old ``timestamp`` (more than five minutes back) to test replay rejection.
    """
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=stamp, body=body)
    assert signature is not None  # only None when timestamp is None
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
    }


def _team() -> dict[str, Any]:
    return {"id": TEAM_ID, "domain": TEAM_DOMAIN}


def _user(user_id: str, username: str | None) -> dict[str, Any]:
    name = username or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID}


def _payload_form(payload: dict[str, Any]) -> bytes:
    """Interactivity arrives as ``payload=<urlencoded JSON>``, never as a JSON body."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def block_actions_body(
    *,
    action_id: str,
    value: str,
    user_id: str,
    channel: str,
    message_ts: str,
    trigger_id: str = "123.456",
    message: dict[str, Any] | None = None,
    block_id: str = "actions",
    username: str | None = None,
    channel_name: str = "security-alerts",
    response_url: str = DEFAULT_RESPONSE_URL,
    action_ts: str | None = None,
) -> bytes:
    """A button click on a bot message, form-encoded exactly as Slack posts it.

    Pass ``message=standin.messages[channel][i]`` to click a button on a message the bot
    really posted; otherwise a minimal bot message with ``message_ts`` is made up.
    """
    if message is None:
        # What an app's own chat.postMessage looks like: bot user plus bot_id, no subtype.
        message = {
            "type": "message",
            "text": "",
            "ts": message_ts,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "blocks": [],
        }
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, username),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id,
        "team": _team(),
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": channel_name},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": value, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": action_ts or f"{int(time.time())}.000000",
            }
        ],
    }
    return _payload_form(payload)


def view_submission_body(
    *,
    callback_id: str,
    private_metadata: str,
    user_id: str,
    values: dict[str, Any],
    view_id: str = "V0STANDIN1",
    trigger_id: str = "123.456",
    username: str | None = None,
) -> bytes:
    """A modal submit, form-encoded as Slack posts it.

    ``values`` is ``view.state.values``: ``{block_id: {action_id: {"type": ..., "value": ...}}}``.
    The view's blocks are rebuilt from it as input blocks so handlers that read both agree.
    """
    blocks = [
        {
            "type": "input",
            "block_id": block_id,
            "label": {"type": "plain_text", "text": block_id, "emoji": True},
            "optional": False,
            "dispatch_action": False,
            "element": {"type": element.get("type", "plain_text_input"), "action_id": action_id},
        }
        for block_id, elements in values.items()
        for action_id, element in elements.items()
    ]
    payload: dict[str, Any] = {
        "type": "view_submission",
        "team": _team(),
        "user": _user(user_id, username),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "view": {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": "modal",
            "blocks": blocks,
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": values},
            "hash": "1700000000.standin",
            "title": {"type": "plain_text", "text": "Crow's Nest", "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": {"type": "plain_text", "text": "Cancel", "emoji": True},
            "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "external_id": "",
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return _payload_form(payload)


def slash_command_body(
    *,
    command: str,
    text: str,
    user_id: str,
    channel_id: str,
    username: str | None = None,
    channel_name: str = "security-alerts",
    trigger_id: str = "123.456",
    response_url: str = DEFAULT_RESPONSE_URL,
) -> bytes:
    """A slash command invocation: plain form fields (no ``payload=`` wrapper, unlike actions)."""
    return urlencode(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": username or user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    ).encode()
