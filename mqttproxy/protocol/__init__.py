"""Sans-IO MQTT 3.1.1: packets, codec and the server connection state machine.

Nothing here does I/O or imports asyncio; feed bytes in, take packets and
bytes out.
"""

from mqttproxy.protocol.codec import Decoder, encode_packet
from mqttproxy.protocol.connection import ConnectionState, ServerConnection
from mqttproxy.protocol.packets import (
    Connack,
    Connect,
    ConnectReturnCode,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    QoS,
    Suback,
    SubackReturnCode,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)

__all__ = [
    "Connack",
    "Connect",
    "ConnectReturnCode",
    "ConnectionState",
    "Decoder",
    "Disconnect",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "QoS",
    "ServerConnection",
    "Suback",
    "SubackReturnCode",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "encode_packet",
]
