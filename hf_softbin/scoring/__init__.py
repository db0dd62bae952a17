"""Scoring with a trained model: the KenLM-style API and file scoring (`lm`), n-best rescoring (`rescoring`)."""

from .lm import LanguageModel

__all__ = ["LanguageModel"]
