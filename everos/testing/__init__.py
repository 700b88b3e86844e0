"""Test tools that ship with everos: a fake OpenAI-compatible server with scripted faults.

``python -m everos.testing.fake_llm --port 8089 --fault stall,route=chat`` runs it for people
who want to watch their own deployment survive a misbehaving model endpoint.
"""

from everos._exports import claim_public_names
from everos.testing._fake_answers import (
    chat_answer,
    classification_answer,
    embedding_vectors,
    format_block_refs,
    paragraphs_of,
    rerank_results,
    topic_tree_answer,
)
from everos.testing._fake_llm import FakeLLM, RecordedRequest
from everos.testing._routes import add_log_burst_route
from everos.testing._faults import Effects, Fault, combine, parse_fault_spec, select_faults
from everos.testing._slots import ModelSpeed, SlotModel, estimate_tokens

__all__ = [
    "Effects",
    "FakeLLM",
    "Fault",
    "ModelSpeed",
    "RecordedRequest",
    "add_log_burst_route",
    "chat_answer",
    "classification_answer",
    "combine",
    "embedding_vectors",
    "format_block_refs",
    "paragraphs_of",
    "parse_fault_spec",
    "rerank_results",
    "select_faults",
    "SlotModel",
    "estimate_tokens",
    "topic_tree_answer",
]

claim_public_names(globals())
