"""Alignment and numerical bias (Sato et al. 2026, arXiv 2601.16444): scoring and analysis.

- :mod:`.scoring` -- a judge's score for an item, two ways: the paper's (10 samples at temperature T,
  parsed, invalid dropped, out-of-range clipped, averaged) and exact (the whole distribution over score
  strings from next-token probabilities, from which the sampled mean's distribution, other temperatures and
  the expected score follow without sampling noise);
- :mod:`.analysis` -- tables in, tables out: kurtosis, Pearson r with gold, valid rate, modal share with
  bootstrap intervals, and the distribution calibration of Jiang et al. (2023).
"""
