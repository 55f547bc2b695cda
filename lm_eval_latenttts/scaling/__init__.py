"""Test-time scaling stage: the engine that answers a batch of questions (``engine``), the plan of a request
decided once (``plan``), selection strategies as plug-ins (``strategies``; the votes behind them in
``aggregation``), one call's rollouts and candidates (``rollouts``), RM-guided beam search (``beam``), adaptive
rounds (``adaptive``), the typed result of a question (``result``) and its metric rows (``metrics``)."""
