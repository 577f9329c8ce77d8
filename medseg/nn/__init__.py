"""Network building blocks, the five networks, weight initialisation, numeric precision."""
