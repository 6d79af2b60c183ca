"""Ingest: articles in. Files of every format (`loaders`, one registered `Format` per kind), web pages
(`web`) and feeds (`feeds`) are read into `Document`s, and split into chunks that fit the embedding model
(`chunking`).

Layer 3 of `tests/test_structure.py`'s order: imports only the core modules (`rag.types`, `rag.errors`,
...), the answer backends' registry and the settings, never the store, retrieval or answering.
"""
