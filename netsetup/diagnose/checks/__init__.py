"""The families of diagnose checks, one module each, in the order their checks are listed
(the tunnel first: everything else runs through it)."""

MODULES = ("interfaces", "tunnel", "dns", "reach", "ssh", "voice", "sip", "nat", "speed")
