"""Voice-shaped measurements for `diagnose`: the probe session against the office responder
(`session`), what its records say about a call (`metrics`: RTT, RFC 3550 jitter, loss in each
direction, bursts, reordering) and the MOS estimate from them (`emodel`: ITU-T G.107)."""
