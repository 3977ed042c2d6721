"""Self-Judge (Ye & Ng 2024, arXiv 2409.00935): judges trained without human quality labels.

- :mod:`.embedding` -- the sentence-embedding model behind the cosine (all-MiniLM-L6-v2, offline, verified);
- :mod:`.selfeval` -- the paper's self-evaluation score (expected digit 0-9), cosine recalibration and
  candidate combined training scores (the paper's formula is unpublished: ours, named);
- :mod:`.evaluation` -- Pearson r with GPT-4 scores per responding model and pooled, the length baseline,
  and selective instruction following (curve, area, oracle and random).
"""
