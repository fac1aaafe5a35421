"""The families of diagnose checks, one module each, in the order their checks are listed
(the tunnel first: everything else runs through it)."""

<<<<<<< HEAD
MODULES = ("interfaces", "tunnel", "dns", "reach", "ssh", "voice")
=======
MODULES = ("interfaces", "tunnel", "dns", "reach", "ssh", "speed")
>>>>>>> h-speed
