"""Benchmarks of what users feel: indexing throughput, question latency, answer latency and memory, each
against a ceiling or a competitor measured in the same run (`python -m benchmarks --help`)."""
