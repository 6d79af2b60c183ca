"""`rag serve`: the archive as an HTTP service. OpenAI-compatible chat completions (`openai_api`), `rag`'s
own search, documents, conversations and feedback routes (`native`), the answering logic they share
(`service`), keys, rate limits and size limits (`security`), OpenAI-shaped errors (`errors`) and
Prometheus metrics (`metrics`), assembled in `app`; the conversations it and the chat page keep
(`conversations`) and their export as an eval set (`export`).

Layer 10, over the pipeline and the evaluation's scoring (an exported conversation is scored as a run
is); only the CLI and the chat page import it.
"""
