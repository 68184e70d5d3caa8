"""API errors as google.rpc rich status: one exception type the servicer raises, one place that sends it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _Interceptor = aio.ServerInterceptor

DOMAIN: Final = "micboardd.local"
SERVICE_PREFIX: Final = "/micboard.v1.Micboard/"

# Reasons in ErrorInfo (UPPER_SNAKE, stable: clients branch on them).
REVISION_COMPACTED: Final = "REVISION_COMPACTED"
CONFIRM_REQUIRED: Final = "CONFIRM_REQUIRED"
SHOW_LOCK: Final = "SHOW_LOCK"
ROLE_REQUIRED: Final = "ROLE_REQUIRED"
ETAG_MISMATCH: Final = "ETAG_MISMATCH"
DEVICE_OFFLINE: Final = "DEVICE_OFFLINE"
FILE_MANAGED: Final = "FILE_MANAGED"
TOKEN_INVALID: Final = "TOKEN_INVALID"


class ApiError(Exception):
    """An RPC failure with a status code, a message for people and typed details for programs."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Iterable[object] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)

    def to_status(self) -> grpc.Status:
        rich = status_pb2.Status(code=self.code.value[0], message=self.message)
        for d in self.details:
            packed = any_pb2.Any()
            packed.Pack(d)  # type: ignore[arg-type]
            rich.details.append(packed)
        status: grpc.Status = rpc_status.to_status(rich)
        return status


def error_info(reason: str, metadata: Mapping[str, str] | None = None) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=dict(metadata or {}))


def bad_request(violations: Iterable[tuple[str, str]], message: str | None = None) -> ApiError:
    """INVALID_ARGUMENT naming every bad field (``field`` uses request paths like ``slot.channel``)."""
    items = list(violations)
    br = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in items]
    )
    text = message or "; ".join(f"{f}: {d}" for f, d in items) or "invalid request"
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, text, [br])


def not_found(resource_type: str, name: str, message: str | None = None) -> ApiError:
    info = error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=name)
    return ApiError(grpc.StatusCode.NOT_FOUND, message or f"no {resource_type} {name!r}", [info])


def aborted_etag(resource_type: str, name: str, current: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.ABORTED,
        f"{resource_type} {name!r} changed since it was read (etag mismatch); read it again and retry",
        [error_info(ETAG_MISMATCH, {"current_etag": current}),
         error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=name)],
    )



class ErrorInterceptor(_Interceptor):
    """Turns ApiError raised by a Micboard handler into its rich status; anything else into INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(SERVICE_PREFIX):
            return handler
        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(_wrap_unary(handler.unary_unary, method), des, ser)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(_wrap_stream(handler.unary_stream, method), des, ser)
        return handler


async def abort(context: aio.ServicerContext[Any, Any], error: ApiError) -> NoReturn:
    status = error.to_status()
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def _wrap_unary(behavior: Any, method: str) -> Any:
    async def unary(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except ApiError as exc:
            await abort(context, exc)
        except (asyncio.CancelledError, aio.AbortError):
            raise
        except Exception:
            log.exception("%s failed", method)
            await abort(context, ApiError(grpc.StatusCode.INTERNAL, "internal error; the daemon log has details"))

    return unary


def _wrap_stream(behavior: Any, method: str) -> Any:
    async def stream(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            async for item in behavior(request, context):
                yield item
        except ApiError as exc:
            await abort(context, exc)
        except (asyncio.CancelledError, aio.AbortError):
            raise
        except Exception:
            log.exception("%s failed", method)
            await abort(context, ApiError(grpc.StatusCode.INTERNAL, "internal error; the daemon log has details"))

    return stream
