"""Search over the index: search tokens, atomic facts, keyword / vector / hybrid recall, fusion and
rerank (see :class:`SearchService`)."""

from everos.search._facts import MAX_FACT_CHARS, split_facts
from everos.search._fusion import rrf
from everos.search._service import METHODS, DocumentLookup, Reranker, SearchService, TopicContentLookup
from everos.search._tokens import STOP_WORDS, search_tokens, warm_up

__all__ = [
    "DocumentLookup",
    "MAX_FACT_CHARS",
    "METHODS",
    "Reranker",
    "STOP_WORDS",
    "SearchService",
    "TopicContentLookup",
    "rrf",
    "search_tokens",
    "split_facts",
    "warm_up",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("everos.search._"):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
del _name, _obj
