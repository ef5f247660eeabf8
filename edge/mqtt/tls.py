"""TLS for the broker connection: one SSLContext built and checked when the publisher is created."""

from __future__ import annotations

import ssl

from edge.config import ConfigError, TlsConfig


def build_ssl_context(tls: TlsConfig, source: str = "mqtt.tls") -> ssl.SSLContext | None:
    """None when TLS is off. Raises ConfigError naming the bad file (``mqtt.tls.ca_file``…) and the cause."""
    if not tls.enabled:
        return None
    problems: list[tuple[str, str]] = []
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, name)
        if path is not None and not path.is_file():
            problems.append((f"{source}.{name}", f"file not found: {path}"))
    if tls.key_file and not tls.cert_file:
        problems.append((f"{source}.cert_file", "key_file is set but cert_file is not (client certificates need both)"))
    if problems:
        raise ConfigError("mqtt", problems)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        if tls.ca_file:
            ctx.load_verify_locations(cafile=str(tls.ca_file))
    except (ssl.SSLError, OSError) as e:
        raise ConfigError("mqtt", [(f"{source}.ca_file", f"not a PEM CA certificate: {e}")]) from None
    try:
        if tls.cert_file:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError("mqtt", [(f"{source}.cert_file", f"cannot load client certificate/key: {e}")]) from None
    if tls.insecure:  # testing only: no hostname check, no certificate verification
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
