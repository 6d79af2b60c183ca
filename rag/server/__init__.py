"""`rag serve`: the archive as an HTTP service. OpenAI-compatible chat completions (`openai_api`), `rag`'s
own search, documents, conversations and feedback routes (`native`), the answering logic they share
(`service`), keys, rate limits and size limits (`security`), OpenAI-shaped errors (`errors`) and
Prometheus metrics (`metrics`), assembled in `app`."""
