"""Pure formulas on reduced statistics (counts, contingency tables, distances): no voxels."""
