"""The papers' prompts, verbatim, one module per paper, each with its source.

Prompts are experimental materials: a changed word can change a judge's answer. They are kept here exactly
as the authors released them (typos included, e.g. "news-articler summarizer", "Aricle:") and are never
edited; experiments import them from here.
"""
