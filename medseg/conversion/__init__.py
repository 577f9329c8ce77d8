"""Raw ACDC and M&Ms to the training layout, and ACDC-C generation."""
