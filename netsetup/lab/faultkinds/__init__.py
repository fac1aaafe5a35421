"""More kinds of lab faults, one module per area (each registers its kinds with
`netsetup.lab.faults.define` when imported; `netsetup.lab.faults` imports them all)."""

MODULES = ("voice", "sip", "load")
