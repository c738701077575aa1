"""Guardrails: moderation (a classifier over a sentence encoder, personal-data patterns, and the
served model's own judgement), the rails the server runs around a generation, and the safety
evaluation that measures them. See docs/safety.md."""
