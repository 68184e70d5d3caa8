"""TLS trust and transport-failure meaning for the HTTPS families (SSCv2 and the Shure System API).

One place decides what a device's ``tls_ca_file`` / ``tls_insecure`` settings mean (a pinned certificate
is its own trust anchor, the hostname check is an option, insecure is said once at WARNING) and what a
failed TLS or socket operation means (STYLE.md "classify errors": an untrusted certificate is terminal,
the rest retryable).
"""

from __future__ import annotations

import ssl

import httpx

from ..config import DeviceConfig
from .base import DeviceError, DeviceLogger, RetryableError, TerminalError, describe_os_error


def url_host(host: str) -> str:
    """A host as it goes in a URL: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class TlsTrust:
    """The TLS trust one device's config asks for: its pinned certificate, the system store, or none at all."""

    def __init__(
        self, config: DeviceConfig, log: DeviceLogger, *, check_hostname: bool, secret: str, certificate: str
    ) -> None:
        self.config = config
        self.log = log
        self.check_hostname = check_hostname  # device certificates may not name the host they are reached by
        self.secret = secret  # what an eavesdropper could read without verification ("the API key")
        self.certificate = certificate  # what tls_ca_file should name ("the device certificate")
        self._warned_insecure = False

    def context(self) -> ssl.SSLContext | None:
        """A verifying context, or None when ``tls_insecure`` turns verification off (warned once).

        TerminalError when ``tls_ca_file`` cannot be loaded.
        """
        cfg = self.config
        if cfg.tls_ca_file:
            try:
                ctx = ssl.create_default_context(cafile=cfg.tls_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise TerminalError(f"tls_ca_file {cfg.tls_ca_file!r} is not a readable PEM file: {exc}") from exc
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a pinned certificate is its own trust anchor
            ctx.check_hostname = self.check_hostname
        elif cfg.tls_insecure:
            if not self._warned_insecure:
                self._warned_insecure = True
                self.log.warning(
                    "TLS certificate verification is OFF (tls_insecure = true); anyone on the network path can "
                    "read %s. Set tls_ca_file to %s instead.", self.secret, self.certificate,
                )
            return None
        else:
            # The system trust store: right for a CA-signed certificate; a self-signed one fails the
            # handshake with a TerminalError that says what to set.
            ctx = ssl.create_default_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


def unverified_context() -> ssl.SSLContext:
    """A client context that checks nothing, for ``tls_insecure`` where a context object is required."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def transport_error(exc: BaseException, what: str, *, origin: str, pin_hint: str) -> DeviceError:
    """The DeviceError a transport failure means: an untrusted certificate is terminal, the rest retryable.

    ``origin`` names the server in the message; ``pin_hint`` says what tls_ca_file should be set to.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return TerminalError(
                f"TLS certificate of {origin} not trusted ({cause.verify_message}); set tls_ca_file to "
                f"{pin_hint} (or tls_insecure = true to skip verification)"
            )
        if isinstance(cause, ssl.SSLError):
            return RetryableError(f"{what}: TLS error ({cause.reason or cause})")
        if isinstance(cause, OSError) and cause.strerror:
            return RetryableError(f"{what}: {describe_os_error(cause)}")
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return RetryableError(f"{what}: timed out")
    return RetryableError(f"{what}: {type(exc).__name__} {exc}".strip())
