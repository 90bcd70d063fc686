"""MLServer's scikit-learn runtime, sending kept-alive clients away while the pod drains.

On SIGTERM MLServer (uvicorn) stops listening and closes every idle kept-alive
connection at once. A client that sends on one of them in that instant loses
its request: the server closes the socket without reading it, and the client
sees the connection closed. Endpoint removal does not help those clients —
their connections were opened before it and go on to this pod.

So the chart's preStop hook creates ``DRAIN_FILE`` before it sleeps, and from
then on every answer carries ``Connection: close``: each kept-alive client
closes its connection after its next answer and opens a new one, which the
Service routes to a pod that is not going away. By the time SIGTERM comes, no
kept-alive client is left on this pod.

MLServer copies ``parameters.headers`` of a response into the HTTP answer's
headers (and leaves them out of its body).
"""

from __future__ import annotations

import os

from mlserver.types import InferenceRequest, InferenceResponse, Parameters
from mlserver_sklearn import SKLearnModel

DRAIN_FILE = os.environ.get("DRAIN_FILE", "/tmp/draining")


class WineModel(SKLearnModel):
    """The scikit-learn runtime, unchanged but for ``Connection: close`` while draining."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        response = await super().predict(payload)
        if os.path.exists(DRAIN_FILE):
            parameters = response.parameters or Parameters()
            parameters.headers = {**(parameters.headers or {}), "Connection": "close"}
            response.parameters = parameters
        return response
