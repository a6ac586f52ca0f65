-- The weights' format: gguf (in the store), or safetensors / huggingface for a model whose
-- weights stay outside the store (a reference layer, see src/reference.rs).
ALTER TABLE models ADD COLUMN format TEXT NOT NULL DEFAULT 'gguf';
