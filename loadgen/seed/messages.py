"""Messages across the boundary between loadgen and the SDK, in one process.

loadgen's generated messages (``loadgen.pb``) and the SDK's (``dispatch.sdk.v1``)
are different classes of the same wire format: loadgen registers its copies under
its own names (package ``loadgen.dispatch.sdk.v1``, see ``loadgen/pb/generate.py``),
so both load side by side. The seed API accepts either by their wire bytes, never
by copying fields, and answers in the caller's classes:

* :func:`as_own` turns a message of any generated copy of the Dispatch protos
  (the SDK's, a user's) into loadgen's class of the same name, and :func:`convert`
  turns one into a given class of the same message;
* :func:`counterpart` finds the class of another message of the caller's copy
  (the ``RunResponse`` beside a ``RunRequest``), in the caller's descriptor pool;
* :func:`sdk_class` is the SDK's class of a message when the SDK's generated
  modules are loaded in this process, else ``None``.

The well-known types (``google.protobuf.Any``, ``Timestamp``, ``Duration``) are
the ordinary shared classes on both sides, so outputs work with the SDK's
helpers (``Any.Unpack``, ``dispatch.proto._any_unpickle``) as they are.
"""

from __future__ import annotations

from typing import TypeVar, cast

from google.protobuf import descriptor, descriptor_pool, message_factory
from google.protobuf.message import Message

__all__ = ["SDK_PACKAGE", "as_own", "convert", "counterpart", "sdk_class"]

SDK_PACKAGE = "dispatch.sdk.v1"

M = TypeVar("M", bound=Message)

_sdk_classes: dict[str, type[Message]] = {}


def as_own(message: object, cls: type[M]) -> M:
    """*message* as loadgen's *cls*: itself if it is one, else parsed from its wire bytes.

    Any generated class of a message with the same name is accepted (the SDK's
    ``dispatch.sdk.v1.Call`` for loadgen's ``Call``); anything else is a ``TypeError``.
    """
    if type(message) is cls:
        return message
    name = cls.DESCRIPTOR.name
    if not isinstance(message, Message) or message.DESCRIPTOR.name != name:
        raise TypeError(f"expected a {name} message (loadgen's or the SDK's), got {type(message).__qualname__}")
    return convert(message, cls)


def convert(message: Message, cls: type[M]) -> M:
    """*message* in the class *cls* of the same message, through its wire bytes (no copy if it already is one)."""
    if type(message) is cls:
        return message
    return cls.FromString(message.SerializeToString())


def counterpart(like: Message | type[Message], name: str) -> type[Message]:
    """The class of message *name* in the same proto package and descriptor pool as *like*.

    ``counterpart(sdk_run_request, "RunResponse")`` is the SDK's ``RunResponse``.
    """
    file = like.DESCRIPTOR.file
    full_name = f"{file.package}.{name}" if file.package else name
    try:
        found = cast(descriptor.Descriptor, file.pool.FindMessageTypeByName(full_name))
    except KeyError:
        raise TypeError(f"{like.DESCRIPTOR.full_name} has no {name} beside it (is it a Dispatch message?)") from None
    return message_factory.GetMessageClass(found)


def sdk_class(name: str) -> type[Message] | None:
    """The SDK's class of message *name* (``dispatch.sdk.v1.<name>``) if the SDK's modules are loaded, else ``None``."""
    found = _sdk_classes.get(name)
    if found is not None:
        return found
    try:
        found_descriptor = descriptor_pool.Default().FindMessageTypeByName(f"{SDK_PACKAGE}.{name}")
    except KeyError:
        return None
    found = _sdk_classes[name] = message_factory.GetMessageClass(found_descriptor)
    return found
