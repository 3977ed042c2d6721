"""Self-Judge (Ye & Ng 2024, arXiv 2409.00935): judges trained without human quality labels.

- :mod:`.embedding` -- the sentence-embedding model behind the cosine (all-MiniLM-L6-v2, offline, verified);
- :mod:`.selfeval` -- the paper's self-evaluation score (expected digit 0-9), cosine recalibration,
  candidate combined training scores (the paper's formula is unpublished: ours, named) and the perplexity
  baseline;
- :mod:`.policy` -- the policy's seeded samples of the training and held-out instructions (llama.cpp);
- :mod:`.training` -- LoRA judges with the paper's self-distillation loss, and its ablations;
- :mod:`.evaluation` -- Pearson r with GPT-4 scores per responding model and pooled, the length baseline,
  selective-following curves (area, oracle, random) and the paper's numbers;
- :mod:`.selective` -- selective-following summaries with intervals;
- :mod:`.best_of_n` -- the judge as reward model: picks, both-order win rates by another rater;
- :mod:`.run` -- profiles (``SELF_JUDGE_PROFILES``) and stages: ``judgelab run self-judge --profile ...``.
"""
