"""The device registry: tenants, devices, device credentials, topic ACLs and online status."""

from mqttproxy.registry.service import Conflict, NotFound, Registry

__all__ = ["Conflict", "NotFound", "Registry"]
