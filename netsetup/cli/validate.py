"""`netsetup validate` and `netsetup rule` (owned by the validate work; registered in cli/__init__)."""
