"""Training data: splits, datasets (ACDC, M&Ms, concatenation), crop and transforms."""
