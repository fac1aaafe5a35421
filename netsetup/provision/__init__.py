"""Provisioning: peers, addresses, keys and the client config an assistant receives."""
