"""The one place for what differs between Linux, macOS and Windows (DNS policy, DF bit, routes).

Each module reads one kind of system fact and says so when the system does not show it; the
checks stay portable Python and never branch on the platform themselves.
"""
