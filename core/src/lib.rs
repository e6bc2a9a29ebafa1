//! Computation for lineage: evaluation, linear mode connectivity, basins (work in progress).
