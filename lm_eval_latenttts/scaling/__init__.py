"""Test-time scaling stage: N rollouts per question and their candidates (``rollouts``), choosing one
answer (``aggregation``: majority, best-of-N, RM-weighted vote), RM-guided beam search (``beam``) and the
per-question metrics and intervals (``metrics``)."""
