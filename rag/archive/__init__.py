"""A time-sharded archive: one normal index per publication month, searched as one.

    <archive>/catalog.json           the partitions with their date ranges, counts and embedding model
    <archive>/partitions/2021-03/    an index directory like any other (`rag.store.index`)
    <archive>/partitions/undated/    articles without a date

News is asked about by date, so a question's dates prune whole partitions before anything is searched.
The modules, in the order a question meets them:

- `catalog`: which partitions exist and which dates each covers;
- `shard`: searches some partitions where they live (in this process, or as a Ray actor);
- `shards`: the shards of an archive, in process or on a Ray cluster, and what happens when one fails;
- `search`: the shards as a retrieval source (`rag.retrieval.source`), searched by the same stages as one index;
- `ingest`: which partition an article goes to, and writing the partitions and catalog.

Reading, chunking and embedding on a Ray cluster is the pipeline's (`rag.pipeline.ray_indexer`). Ray is
optional (`pip install 'rag[ray]'`): an archive is also searched in process without it.

Layer 6: imports the store and retrieval (and what they may); never answering or the pipeline.
"""
