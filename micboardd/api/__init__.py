"""gRPC API (micboard.v1) over grpc.aio."""
