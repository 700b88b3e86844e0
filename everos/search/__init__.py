"""Search over the index: search tokens, atomic facts, keyword / vector / hybrid recall, fusion and
rerank (see :class:`SearchService`)."""

from everos._exports import claim_public_names
from everos.search._facts import MAX_FACT_CHARS, split_facts
from everos.search._fusion import rrf
from everos.search._service import METHODS, HitLookup, Reranker, SearchService
from everos.knowledge._tokens import STOP_WORDS, search_tokens, warm_up

__all__ = [
    "HitLookup",
    "MAX_FACT_CHARS",
    "METHODS",
    "Reranker",
    "STOP_WORDS",
    "SearchService",
    "rrf",
    "search_tokens",
    "split_facts",
    "warm_up",
]

claim_public_names(globals())
