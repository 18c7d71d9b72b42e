"""Planning: list both sides, merge the sorted listings, decide what to copy."""
