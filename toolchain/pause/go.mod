module rollout-harness.local/toolchain/pause

go 1.24
