"""Experiments: each module turns data and model outputs into the tables and figures of one chapter."""
