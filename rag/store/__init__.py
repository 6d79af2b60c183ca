"""Store: what is kept on disk, and the model that makes its vectors. One index (`index`) is its records in
SQLite (`records`), its exact vectors (`vectors`), an IVF once it is large (`ann`) and its BM25 keyword
indexes (`sparse`); `embedding` (with `embedding_onnx`) turns text into the vectors it holds.

Layer 4: imports the core modules and the settings; nothing of retrieval, answering or the pipeline.
"""
