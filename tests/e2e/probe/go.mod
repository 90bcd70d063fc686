module rollout-harness.local/tests/e2e/probe

go 1.24
