"""`netsetup responder`: answers an assistant's questions from the company's side.

`--role gateway` is the witness (netsetup.responder.witness) on the WireGuard gateway: it tells
the owner of a key whether the gateway saw their packets and what it thinks of their key, and
acks probes. The wire format is in `auth`, the assistant's side in `client`.
"""
