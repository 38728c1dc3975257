"""Studies: a declared matrix of runs, its runner's plan, statistics across seeds, and the report."""
