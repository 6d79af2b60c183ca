"""Answer: from retrieved passages to a cited answer. The question's kind and parts (`question`), a
follow-up rewritten into a standalone question (`conversation`), the passages packed under the token
budget (`packing`), the reader that drafts, holds a small model to a span and decides to answer or refuse
(`reader`, with `spans`, `nlp`, `evidence`, `confidence`), the citations checked against their passages
(`citations`) and multiple-choice answers (`choice`).

Layer 7: imports the core modules, the backends, the settings and `rag.ingest` (sentence splitting);
never the store, retrieval or the pipeline, so the reader can be tested on passages alone.
"""
