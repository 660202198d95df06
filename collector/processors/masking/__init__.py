"""Finding and replacing personal data and secrets: detectors, key rules, the walkers."""
