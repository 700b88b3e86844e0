"""The fuzz targets: each module holds the one-input checks of one surface of everos, shared by
the atheris entry points and the hypothesis tests. A check returns when everos kept its contract
on that input (only the documented errors, the invariants held) and raises otherwise.

    upload     the multipart upload path, request bytes to the acceptance point (G10)
    markdown   the EverOS markdown readers, the outline and the built-in extractor
    answers    what model endpoints answer: chat, embeddings, rerank, streams, topic trees, facts,
               the classification
    requests   the knowledge API's request models (search, listings, writes, path ids)
    config     load_config with an everos.toml and environment variables
"""
