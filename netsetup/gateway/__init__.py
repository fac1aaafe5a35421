"""The gateway side: its WireGuard config and firewall, rendered from a profile and its peers."""
