"""Generated protobuf and gRPC modules for ``dispatch.sdk.v1`` (see ``generate.py``)."""
