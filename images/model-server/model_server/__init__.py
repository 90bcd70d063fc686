"""The model under test: a scikit-learn classifier behind KServe v1 and v2 HTTP APIs.

This is the thing the harness rolls out. It is deliberately small but real:
the model is trained at image build time (``python -m model_server.train``),
the server reports readiness honestly, and it drains gracefully so a rolling
update loses no request. Build-time variants (``X.Y.Z-flaky`` and friends)
misbehave on purpose so the gate can be shown to fail.

Modules, in the order data flows:

- ``versions``: semver parsing and the behaviour a pre-release suffix selects.
- ``train``: dataset, estimator per version, artefacts on disk.
- ``model``: loading artefacts, validating inputs, predicting.
- ``tensors``: reading Open Inference Protocol (v2) infer requests.
- ``fastpath``: numpy-only predictors compiled from fitted pipelines.
- ``settings``: ``MODEL_*`` environment variables, parsed once.
- ``metrics``: Prometheus text exposition, written by hand.
- ``app``: routes and responses, independent of the transport.
- ``protocol``: one HTTP/1.1 connection on asyncio.
- ``serving``: the listening socket, loading, drain and shutdown.
- ``client``: stdlib-only ``drain`` and ``smoke`` commands (preStop, helm test).
"""

from __future__ import annotations

DEFAULT_MODEL_NAME = "ml-model"
"""Model name in the API paths when ``MODEL_NAME`` is not set."""
