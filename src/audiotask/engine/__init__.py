"""The data engine: prepared metadata, samplers, target builders, readers and batches that tasks pick."""
