module rollout-harness.local/toolchain/runtime-shim

go 1.24
