"""Client of the micboardd gRPC API (micboard.v1) and the ``micboardctl`` command."""

from .client import DEFAULT_SOCKET, Client, MicboardError, SyncClient
from .gen.micboard.v1 import micboard_pb2 as pb
from .gen.micboard.v1 import resources_pb2 as rpb

__all__ = ["DEFAULT_SOCKET", "Client", "MicboardError", "SyncClient", "pb", "rpb"]
__version__ = "0.1.0"
