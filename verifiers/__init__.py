"""Proposal samplers, scorers (verifier, value, safety), selectors and the steered policy."""
