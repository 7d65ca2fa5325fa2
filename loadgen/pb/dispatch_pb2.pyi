from loadgen.pb import call_pb2 as _call_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DispatchRequest(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[_call_pb2.Call]
    def __init__(self, calls: _Optional[_Iterable[_Union[_call_pb2.Call, _Mapping]]] = ...) -> None: ...

class DispatchResponse(_message.Message):
    __slots__ = ("dispatch_ids",)
    DISPATCH_IDS_FIELD_NUMBER: _ClassVar[int]
    dispatch_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dispatch_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WaitRequest(_message.Message):
    __slots__ = ("dispatch_id", "timeout")
    DISPATCH_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    dispatch_id: str
    timeout: _duration_pb2.Duration
    def __init__(self, dispatch_id: _Optional[str] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...
