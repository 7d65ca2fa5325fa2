"""Generated protobuf and gRPC modules of the Dispatch protocol (``proto/``), see ``generate.py``.

They carry loadgen's own proto names (files ``loadgen/pb/*.proto``, package
``loadgen.dispatch.sdk.v1``) with the wire format and gRPC method paths of
``dispatch.sdk.v1``, so they load in one process with the SDK's own modules.
"""
