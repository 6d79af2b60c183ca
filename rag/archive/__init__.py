"""A time-sharded archive: one normal index per publication month, searched as one.

    <archive>/catalog.json           the partitions with their date ranges, counts and embedding model
    <archive>/partitions/2021-03/    an index directory like any other (`rag.index`)
    <archive>/partitions/undated/    articles without a date

News is asked about by date, so a question's dates prune whole partitions before anything is searched.
The modules, in the order a question meets them:

- `catalog`: which partitions exist and which dates each covers;
- `shard`: searches some partitions where they live (in this process, or as a Ray actor);
- `shards`: the shards of an archive, in process or on a Ray cluster, and what happens when one fails;
- `search`: gathers the shards' candidates and runs the single-machine retrieval stages over them;
- `ingest`: which partition an article goes to, and writing the partitions and catalog;
- `ray_ingest`: reading, chunking and embedding on a Ray cluster (Ray Data), for `rag index --ray`.

Ray is optional (`pip install 'rag[ray]'`): an archive is also searched in process without it.
"""
