"""Who is calling and what they may call: bearer tokens → roles, checked per method before any handler runs.

Decision for the Unix socket: its file mode (0660 in the runtime directory) is the access control,
so a caller without a token gets ``socket_role`` (admin by default) as actor ``local``. A caller that
does send a token on the socket is held to that token's role (handy to drop privileges, and how the
tests exercise roles); a wrong token is UNAUTHENTICATED everywhere. The TCP listener has no anonymous
role: every call but health checks needs ``authorization: Bearer <token>``.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import grpc
from grpc import aio

from ..actions import Actor, Role
from ..config import ApiToken
from .errors import ROLE_REQUIRED, TOKEN_INVALID, ApiError, error_info

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _Interceptor = aio.ServerInterceptor

SERVICE: Final = "micboard.v1.Micboard"
HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES: Final = ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")

# The lowest role per method; a Micboard method missing here needs admin (fail closed).
METHOD_ROLES: Final[Mapping[str, Role]] = {
    "GetStatus": Role.VIEWER,
    "ListDevices": Role.VIEWER,
    "GetDevice": Role.VIEWER,
    "ListChannels": Role.VIEWER,
    "GetChannel": Role.VIEWER,
    "ListSlots": Role.VIEWER,
    "GetSlot": Role.VIEWER,
    "ListGroups": Role.VIEWER,
    "ListAlerts": Role.VIEWER,
    "Watch": Role.VIEWER,
    "StreamMeters": Role.VIEWER,
    "ListDeviceConfigs": Role.VIEWER,
    "GetChannelHistory": Role.VIEWER,
    "ListAuditLog": Role.OPERATOR,
    "UpdateSlot": Role.OPERATOR,
    "DeleteSlot": Role.OPERATOR,
    "UpdateGroup": Role.OPERATOR,
    "DeleteGroup": Role.OPERATOR,
    "AcknowledgeAlert": Role.OPERATOR,
    "Identify": Role.OPERATOR,
    "Rename": Role.OPERATOR,
    "SetMeterRate": Role.OPERATOR,
    # The dangerous actions are checked again (admin, confirm, show lock) by the action runner.
    "SetMute": Role.ADMIN,
    "SetGain": Role.ADMIN,
    "SetFrequency": Role.ADMIN,
    "SetGroupChannel": Role.ADMIN,
    "AddDevice": Role.ADMIN,
    "UpdateDevice": Role.ADMIN,
    "RemoveDevice": Role.ADMIN,
    "SetShowLock": Role.ADMIN,
}

_actor: contextvars.ContextVar[Actor] = contextvars.ContextVar("micboard_actor")


def current_actor() -> Actor:
    """The caller of the RPC being handled (set by the interceptor for every Micboard method)."""
    return _actor.get()


def method_role(method: str) -> Role:
    """``/micboard.v1.Micboard/ListChannels`` → its lowest role."""
    return METHOD_ROLES.get(method.rpartition("/")[2], Role.ADMIN)


class TokenTable:
    """Configured bearer tokens, compared in constant time; the secret values never leave this object."""

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._tokens = [(t.token.reveal().encode("utf-8"), t.name, Role.parse(t.role)) for t in tokens]

    def lookup(self, presented: str) -> tuple[str, Role] | None:
        raw = presented.encode("utf-8")
        found: tuple[str, Role] | None = None
        for secret, name, role in self._tokens:
            if hmac.compare_digest(secret, raw) and found is None:
                found = (name, role)
        return found

    def __len__(self) -> int:
        return len(self._tokens)


def _bearer(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            scheme, _, token = text.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def _refusing_handler(handler: Handler, error: ApiError) -> Handler:
    """A handler of the same shape as ``handler`` that only fails the call with ``error``."""
    status = error.to_status()

    async def refuse(_request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(status.code, status.details, status.trailing_metadata)

    async def refuse_stream(_request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(status.code, status.details, status.trailing_metadata)
        yield  # pragma: no cover - makes this an async generator like the handler it stands in for

    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, des, ser)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, des, ser)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse, des, ser)
    return grpc.unary_unary_rpc_method_handler(refuse, des, ser)


class AuthInterceptor(_Interceptor):
    """Maps the caller to an Actor (token or listener default), enforces the method's role, records the actor."""

    def __init__(self, tokens: TokenTable, *, anonymous_role: Role | None, listener: str) -> None:
        self.tokens = tokens
        self.anonymous_role = anonymous_role
        self.listener = listener

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler  # probes need no token; unknown methods get UNIMPLEMENTED from grpc
        try:
            actor = self._authenticate(handler_call_details.invocation_metadata)  # type: ignore[arg-type]
            if not method.startswith(REFLECTION_PREFIXES):
                needed = method_role(method)
                if actor.role < needed:
                    raise ApiError(
                        grpc.StatusCode.PERMISSION_DENIED,
                        f"{method.rpartition('/')[2]} needs the {needed.name.lower()} role; "
                        f"{actor.name} is {actor.role.name.lower()}",
                        [error_info(ROLE_REQUIRED, {"required": needed.name.lower(),
                                                    "actual": actor.role.name.lower()})],
                    )
        except ApiError as exc:
            log.info("%s: refused %s: %s", self.listener, method, exc.message)
            return _refusing_handler(handler, exc)
        _actor.set(actor)
        return handler

    def _authenticate(self, metadata: Sequence[tuple[str, Any]] | None) -> Actor:
        presented = _bearer(metadata)
        if presented is None:
            if self.anonymous_role is None:
                raise ApiError(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "this listener needs 'authorization: Bearer <token>' metadata",
                    [error_info(TOKEN_INVALID, {"listener": self.listener})],
                )
            return Actor("local", self.anonymous_role, "grpc")
        found = self.tokens.lookup(presented) if presented else None
        if found is None:
            raise ApiError(
                grpc.StatusCode.UNAUTHENTICATED, "unknown or malformed bearer token",
                [error_info(TOKEN_INVALID, {"listener": self.listener})],
            )
        name, role = found
        return Actor(name, role, "grpc")
