"""Storage: Tortoise models and plain async query functions (compare-and-set updates)."""
