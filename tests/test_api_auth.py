"""The TCP listener: TLS plus bearer tokens mapped to roles; health answers without a token."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import trustme
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from micboard_client import Client, MicboardError

from micboardd.api.gen.micboard.v1 import micboard_pb2 as pb
from micboardd.api.gen.micboard.v1 import micboard_pb2_grpc as pb_grpc
from micboardd.api.testing import daemon_config, error_reason, fake_board, running_daemon

TOKENS = [
    {"name": "board-screen", "role": "viewer", "token_file": "viewer.token"},
    {"name": "engineer", "role": "admin", "token": "admin-secret"},
]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_tls_and_tokens_on_tcp(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "viewer.token").write_text("viewer-secret\n")
    api = {"tcp_listen": "127.0.0.1:0", "tls_cert_file": str(tmp_path / "cert.pem"),
           "tls_key_file": str(tmp_path / "key.pem"), "tokens": TOKENS}
    async with running_daemon(daemon_config(tmp_path, api=api)) as d:
        d.hub.apply(fake_board(2))
        assert d.api is not None and d.api.tcp_port
        target = f"127.0.0.1:{d.api.tcp_port}"
        creds = grpc.ssl_channel_credentials(root_certificates=(tmp_path / "ca.pem").read_bytes())
        async with aio.secure_channel(target, creds) as channel:
            stub = pb_grpc.MicboardStub(channel)
            for metadata in ((), bearer("wrong"), (("authorization", "Basic dXNlcjpwdw=="),)):
                with pytest.raises(aio.AioRpcError) as e:
                    await stub.ListChannels(pb.ListChannelsRequest(), metadata=metadata)
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert error_reason(e.value) == "TOKEN_INVALID"
            with pytest.raises(aio.AioRpcError) as e:  # streams are guarded the same way
                await stub.Watch(pb.WatchRequest()).read()
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

            listed = await stub.ListChannels(pb.ListChannelsRequest(), metadata=bearer("viewer-secret"))
            assert len(listed.channels) == 8
            with pytest.raises(aio.AioRpcError) as e:
                await stub.SetShowLock(pb.SetShowLockRequest(on=True), metadata=bearer("viewer-secret"))
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert (await stub.SetShowLock(pb.SetShowLockRequest(on=True), metadata=bearer("admin-secret"))).on
            log = await stub.ListAuditLog(pb.ListAuditLogRequest(limit=1), metadata=bearer("admin-secret"))
            entry = log.entries[0]
            assert (entry.actor, entry.action) == ("grpc:engineer", "SetShowLock")

            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING

        # Plain text to the TLS port gets nowhere.
        async with aio.insecure_channel(target) as channel:
            with pytest.raises(aio.AioRpcError) as e:
                await pb_grpc.MicboardStub(channel).GetStatus(pb.GetStatusRequest(), timeout=3)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE

        # The packaged client: TLS with a private CA and a token.
        async with Client(target, token="viewer-secret", ca_file=tmp_path / "ca.pem") as mb:
            chans, revision = await mb.channels()
            assert len(chans) == 8 and revision > 0
            with pytest.raises(MicboardError) as me:
                await mb.set_show_lock(False)
            assert me.value.code == grpc.StatusCode.PERMISSION_DENIED and me.value.reason == "ROLE_REQUIRED"
