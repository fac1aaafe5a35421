"""NS0xx: syntax and schema. The checks themselves live in `netsetup.profile.schema` (parsing
collects every issue, with its code); this module documents them for `netsetup rule`."""

from __future__ import annotations

from netsetup.profile import schema as s
from netsetup.validate.findings import Severity
from netsetup.validate.registry import define

E = Severity.ERROR

define(
    s.SYNTAX,
    "toml-syntax",
    E,
    "The file cannot be read as TOML: a syntax error, bytes that are not UTF-8, a byte order "
    "mark, nesting too deep or a number too long to read, more than 1 MiB, or not a regular file "
    "at all (a directory, a FIFO, a broken symlink or a symlink loop).",
    "Nothing else in the file can be checked, and netsetup refuses to load it: provisioning and "
    "rendering stop for the whole profile.",
    """
    [network]
    mtu = 13 80
    """,
    """
    [network]
    mtu = 1380
    """,
)
define(
    s.UNKNOWN_KEY,
    "unknown-key",
    E,
    "A key that the schema does not know, usually a typo; the message suggests the closest key.",
    "A misspelt key is silently ignored by most tools, so the setting the author meant never takes "
    "effect (a `keepalve` leaves the default in place).",
    """
    [network]
    tunnel_v4 = "198.18.10.0/24"
    keepalve = 25
    """,
    """
    [network]
    tunnel_v4 = "198.18.10.0/24"
    keepalive = 25
    """,
)
define(
    s.MISSING_KEY,
    "missing-key",
    E,
    "A required key or table is absent (company.name, gateway.endpoint, gateway.public_key, "
    "network.tunnel_v4; name, mode, public_key, address_v4 and created in a peer file).",
    "Without it netsetup cannot render a working configuration for the gateway or the assistant.",
    """
    [gateway]
    endpoint = "vpn.example.example:51820"
    """,
    """
    [gateway]
    endpoint = "vpn.example.example:51820"
    public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="
    """,
)
define(
    s.WRONG_TYPE,
    "wrong-type",
    E,
    "A value of the wrong TOML type: a string where a number belongs, a table where a list does.",
    "The value cannot be used, so the setting falls back to nothing or breaks the configuration.",
    """
    [network]
    mtu = "1380"
    """,
    """
    [network]
    mtu = 1380
    """,
)
define(
    s.BAD_KEY,
    "bad-key",
    E,
    "A WireGuard public key that is not standard base64 of exactly 32 bytes.",
    "wg rejects the key and the whole interface fails to come up, taking every assistant offline, "
    "not only the one with the bad key.",
    """
    public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIH="
    """,
    """
    public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="
    """,
)
define(
    s.BAD_ENDPOINT,
    "bad-endpoint",
    E,
    "An endpoint that is not host:port with a port of 1-65535; an IPv6 address must be in "
    "brackets. Host names are checked for syntax only, never looked up.",
    "The assistant's client cannot reach the gateway at all.",
    """
    [gateway]
    endpoint = "2001:db8::10:51820"
    """,
    """
    [gateway]
    endpoint = "[2001:db8::10]:51820"
    """,
)
define(
    s.BAD_CIDR,
    "bad-cidr",
    E,
    "An address or CIDR that does not parse, or is of the wrong IP family.",
    "A route or address that cannot be parsed cannot be rendered; wg and the firewall reject it.",
    """
    [access]
    dedicated = ["192.0.2.0/33"]
    """,
    """
    [access]
    dedicated = ["192.0.2.0/24"]
    """,
)
define(
    s.HOST_BITS,
    "host-bits-set",
    E,
    "A CIDR with host bits set, such as 192.0.2.10/24; the message names the network meant.",
    "Tools disagree on what it means (some refuse it, some truncate it silently), so the route "
    "that ends up on the gateway is not the one that was reviewed.",
    """
    [access]
    dedicated = ["192.0.2.10/24"]
    """,
    """
    [access]
    dedicated = ["192.0.2.0/24"]
    """,
)
define(
    s.BAD_VALUE,
    "bad-value",
    E,
    "A value outside what the key allows: a name with capitals, a mode or status that does not "
    "exist, a port out of range, a peer file whose name differs from its file name.",
    "netsetup refuses to load the file, so provisioning and rendering stop for the profile.",
    """
    mode = "temporary"
    """,
    """
    mode = "agency"
    """,
)
