"""Reliable MQTT delivery for the edge: durable SQLite outbox + QoS 1 publisher (see docs/mqtt.md)."""

from edge.mqtt.outbox import Outbox, OutboxEntry, OutboxError
from edge.mqtt.publisher import EdgePublisher

__all__ = ["EdgePublisher", "Outbox", "OutboxEntry", "OutboxError"]
