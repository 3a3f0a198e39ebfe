"""One module per peer system the benchmarks compare cywhip with."""
