"""The collector: config, receivers, processors, pipeline, CLI."""
