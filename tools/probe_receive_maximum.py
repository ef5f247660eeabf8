"""Does the broker keep to the subscriber's MQTT v5 Receive Maximum? (why central/receive_queue.py has its own bound)

  .venv/bin/python tools/probe_receive_maximum.py --receive-maximum 100 --messages 3000 [--ack-every-ms 50] [--qos 0]

Starts a Mosquitto on a free port (as tools/bench_central.py does), subscribes a manual-ack client that asks for
``--receive-maximum`` and acknowledges what it holds every ``--ack-every-ms`` (0: never), publishes ``--messages``
1 KB messages at ``--qos``, and prints the most messages the subscriber held unacknowledged at once. A broker that
honours the Receive Maximum keeps that at or below it for QoS 1; QoS 0 is not covered by it at all.
"""

from __future__ import annotations

import argparse
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from tools.bench_central import start_broker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--receive-maximum", type=int, default=100)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--ack-every-ms", type=float, default=50.0, help="0: never acknowledge")
    ap.add_argument("--qos", type=int, default=1, choices=[0, 1])
    args = ap.parse_args()
    broker, port = start_broker(Path(tempfile.mkdtemp(prefix="probe-rm-")))
    held: queue.SimpleQueue[int] = queue.SimpleQueue()
    counts = {"received": 0, "acked": 0}
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe-sub", protocol=mqtt.MQTTv5, manual_ack=True)

    def on_message(_c: mqtt.Client, _ud: object, m: mqtt.MQTTMessage) -> None:
        counts["received"] += 1
        held.put(m.mid)

    sub.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    props.ReceiveMaximum = args.receive_maximum
    sub.connect("127.0.0.1", port, clean_start=False, properties=props)
    sub.subscribe("probe/#", 1)
    sub.loop_start()
    time.sleep(0.5)

    def acker() -> None:
        while True:
            time.sleep(args.ack_every_ms / 1000)
            while True:
                try:
                    mid = held.get_nowait()
                except queue.Empty:
                    break
                if args.qos:
                    sub.ack(mid, 1)
                counts["acked"] += 1

    if args.ack_every_ms > 0:
        threading.Thread(target=acker, daemon=True).start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe-pub")
    pub.max_inflight_messages_set(500)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    for _ in range(args.messages):
        pub.publish("probe/x", b"x" * 1000, qos=args.qos)
    most, t = 0, time.monotonic()
    while time.monotonic() - t < 5:  # counted after ack() was called: the broker sees the PUBACK a little later
        most = max(most, counts["received"] - counts["acked"])
        time.sleep(0.001)
    print(
        f"receive maximum {args.receive_maximum}, QoS {args.qos}, ack every {args.ack_every_ms:g} ms: "
        f"{counts['received']}/{args.messages} received, at most {most} held unacknowledged at once"
    )
    pub.disconnect()
    sub.disconnect()
    broker.terminate()
    broker.wait(10)


if __name__ == "__main__":
    main()
