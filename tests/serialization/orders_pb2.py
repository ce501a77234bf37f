"""What ``protoc --python_out`` makes of ``orders.proto`` (built the same way generated code
is: a serialized FileDescriptorProto added to the default pool), so the tests need no protoc.

    syntax = "proto3";
    package eventwire.tests;
    message Ping { string text = 1; }
    message OrderPlaced {
      string order_id = 1;
      int64 amount = 2;
      message Line { string sku = 1; int32 quantity = 2; }
      repeated Line lines = 3;
    }
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_STRING, _INT64, _INT32, _MESSAGE = 9, 3, 5, 11
_OPTIONAL, _REPEATED = 1, 3

PROTO_SOURCE = """syntax = "proto3";
package eventwire.tests;

message Ping {
  string text = 1;
}

message OrderPlaced {
  string order_id = 1;
  int64 amount = 2;
  message Line {
    string sku = 1;
    int32 quantity = 2;
  }
  repeated Line lines = 3;
}
"""


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="eventwire/tests/orders.proto", package="eventwire.tests", syntax="proto3"
    )
    ping = f.message_type.add(name="Ping")
    ping.field.add(name="text", number=1, type=_STRING, label=_OPTIONAL)
    order = f.message_type.add(name="OrderPlaced")
    order.field.add(name="order_id", number=1, type=_STRING, label=_OPTIONAL)
    order.field.add(name="amount", number=2, type=_INT64, label=_OPTIONAL)
    line = order.nested_type.add(name="Line")
    line.field.add(name="sku", number=1, type=_STRING, label=_OPTIONAL)
    line.field.add(name="quantity", number=2, type=_INT32, label=_OPTIONAL)
    order.field.add(
        name="lines",
        number=3,
        type=_MESSAGE,
        label=_REPEATED,
        type_name=".eventwire.tests.OrderPlaced.Line",
    )
    return f


DESCRIPTOR = descriptor_pool.Default().AddSerializedFile(_file().SerializeToString())
_pool = descriptor_pool.Default()
Ping: Any = message_factory.GetMessageClass(_pool.FindMessageTypeByName("eventwire.tests.Ping"))
OrderPlaced: Any = message_factory.GetMessageClass(
    _pool.FindMessageTypeByName("eventwire.tests.OrderPlaced")
)
