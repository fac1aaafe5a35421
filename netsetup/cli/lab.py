"""`netsetup lab ...` (owned by the lab work; registered in cli/__init__)."""
