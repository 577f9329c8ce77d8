"""The synthetic cardiac cine generator, its pipeline and its report."""
