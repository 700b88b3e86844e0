"""Search over the index: keyword, vector and hybrid recall, fusion and rerank."""
