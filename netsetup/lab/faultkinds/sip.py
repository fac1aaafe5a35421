"""Lab faults for issue 9 (sip)."""
