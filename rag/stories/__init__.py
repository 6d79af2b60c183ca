"""Stories: what the archive says about one topic over time, rather than one answer at one date. A
timeline (`timeline`) groups the articles a wide, dated search finds into events, each quoted from a
cited passage and dated by the sentence or its article.

Layer 7, beside answering: imports the core modules, the settings and `rag.ingest` (sentence splitting);
the search and the embedding model come in as arguments, so a timeline can be tested on passages alone.
"""
