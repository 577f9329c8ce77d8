"""NIfTI read/write with geometry, integrity checks, atomic files, provenance records."""
