from loadgen.pb import call_pb2 as _call_pb2
from loadgen.pb import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_COMPLETED: _ClassVar[Outcome]
    OUTCOME_FAILED: _ClassVar[Outcome]
    OUTCOME_EXPIRED: _ClassVar[Outcome]
    OUTCOME_CANCELLED: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_COMPLETED: Outcome
OUTCOME_FAILED: Outcome
OUTCOME_EXPIRED: Outcome
OUTCOME_CANCELLED: Outcome

class SessionSocketRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionSocketOffer(_message.Message):
    __slots__ = ("port", "shard", "epoch")
    PORT_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    port: int
    shard: int
    epoch: int
    def __init__(self, port: _Optional[int] = ..., shard: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class SessionOpen(_message.Message):
    __slots__ = ("authorization",)
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    authorization: str
    def __init__(self, authorization: _Optional[str] = ...) -> None: ...

class SessionEnd(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[Group]
    def __init__(self, groups: _Optional[_Iterable[_Union[Group, _Mapping]]] = ...) -> None: ...

class Group(_message.Message):
    __slots__ = ("group", "calls", "answer", "skip_results")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    SKIP_RESULTS_FIELD_NUMBER: _ClassVar[int]
    group: int
    calls: _containers.RepeatedCompositeFieldContainer[_call_pb2.Call]
    answer: bool
    skip_results: bool
    def __init__(self, group: _Optional[int] = ..., calls: _Optional[_Iterable[_Union[_call_pb2.Call, _Mapping]]] = ..., answer: bool = ..., skip_results: bool = ...) -> None: ...

class GroupAnswer(_message.Message):
    __slots__ = ("group", "dispatch_ids", "code", "message", "retry_after_ms")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_IDS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    group: int
    dispatch_ids: _containers.RepeatedScalarFieldContainer[str]
    code: int
    message: str
    retry_after_ms: int
    def __init__(self, group: _Optional[int] = ..., dispatch_ids: _Optional[_Iterable[str]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class Ended(_message.Message):
    __slots__ = ("result", "status", "outcome", "group", "index")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    result: _call_pb2.CallResult
    status: _status_pb2.Status
    outcome: Outcome
    group: int
    index: int
    def __init__(self, result: _Optional[_Union[_call_pb2.CallResult, _Mapping]] = ..., status: _Optional[_Union[_status_pb2.Status, str]] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., group: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class SessionHeader(_message.Message):
    __slots__ = ("shard", "epoch")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    shard: int
    epoch: int
    def __init__(self, shard: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("answers", "ended", "header", "end")
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    answers: _containers.RepeatedCompositeFieldContainer[GroupAnswer]
    ended: _containers.RepeatedCompositeFieldContainer[Ended]
    header: SessionHeader
    end: SessionEnd
    def __init__(self, answers: _Optional[_Iterable[_Union[GroupAnswer, _Mapping]]] = ..., ended: _Optional[_Iterable[_Union[Ended, _Mapping]]] = ..., header: _Optional[_Union[SessionHeader, _Mapping]] = ..., end: _Optional[_Union[SessionEnd, _Mapping]] = ...) -> None: ...
