"""One configuration object, loaded with EverOS's precedence and validated at startup.

Precedence, lowest first: the built-in defaults < ``<root>/everos.toml`` <
``EVEROS_<SECTION>__<KEY>`` environment variables < command-line flags. Every setting is declared
once, with its default, its unit (in its name) and its help text; ``everos init`` renders the
commented template from these declarations and ``everos config show`` prints the effective values
with where each came from, so the docs cannot drift from the code.

A bad value stops startup with one :class:`~everos.errors.ConfigError` naming the key, the file or
variable it came from, and what is allowed. Sections and keys that EverOS 1.x has but everos does not
use (its conversation-memory features) are accepted and reported as ignored, so an existing EverOS
``everos.toml`` loads as it is.

::

    _settings   setting(), the section dataclasses, Config, the sections EverOS 1.x has and everos ignores
    _validate   one value against its declaration; the words for what a setting allows
    _load       defaults < everos.toml < environment < flags -> LoadedConfig (with each value's source)
    _render     the everos init template and the config show values
"""

from everos._exports import claim_public_names
from everos.config._load import CONFIG_FILENAME, LoadedConfig, config_path, load_config, resolve_root
from everos.config._render import display_value, iter_settings, render_template
from everos.config._settings import (
    ApiSettings,
    CascadeSettings,
    Config,
    EmbeddingSettings,
    IngestSettings,
    KnowledgeSearchSettings,
    KnowledgeSettings,
    LanceDBSettings,
    LimitsSettings,
    LLMSettings,
    MemorySettings,
    RerankSettings,
    SQLiteSettings,
    _ProviderSettings,
    parse_similarity_range,
    parse_weight,
)

__all__ = [
    "CONFIG_FILENAME",
    "ApiSettings",
    "CascadeSettings",
    "Config",
    "EmbeddingSettings",
    "IngestSettings",
    "KnowledgeSearchSettings",
    "KnowledgeSettings",
    "LanceDBSettings",
    "LimitsSettings",
    "LLMSettings",
    "LoadedConfig",
    "MemorySettings",
    "RerankSettings",
    "SQLiteSettings",
    "config_path",
    "display_value",
    "parse_similarity_range",
    "parse_weight",
    "iter_settings",
    "load_config",
    "render_template",
    "resolve_root",
]

claim_public_names(globals())
