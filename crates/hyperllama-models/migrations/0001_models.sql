-- The model index: one row per manifest in the store. Everything here can be rebuilt
-- from the manifests and blobs (see src/registry.rs); times are Unix milliseconds.
CREATE TABLE models (
    name              TEXT PRIMARY KEY NOT NULL, -- host/namespace/model:tag, casing as on disk
    name_key          TEXT NOT NULL,             -- the name lowercased, for Ollama's case-insensitive lookup
    digest            TEXT NOT NULL,             -- sha256:<hex> of the manifest file's bytes
    size              INTEGER NOT NULL,          -- config + layers, bytes
    architecture      TEXT,
    parameter_count   INTEGER,
    quantization      TEXT,
    context_length    INTEGER,
    embedding_length  INTEGER,
    has_chat_template INTEGER NOT NULL,
    capabilities      TEXT NOT NULL,             -- comma-separated, e.g. completion,tools
    index_error       TEXT,                      -- why metadata could not be read, if so
    created_at        INTEGER NOT NULL,
    modified_at       INTEGER NOT NULL,          -- the manifest file's mtime
    last_used_at      INTEGER
) STRICT;

CREATE INDEX models_name_key ON models (name_key);
