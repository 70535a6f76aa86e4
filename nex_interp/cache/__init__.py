"""Sparse MLP activation caches in the NEX reference layout (plus a manifest)."""
