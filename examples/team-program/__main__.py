"""Our model's deployment: the ml-model chart from our Helm repository at
``chart_version``, serving the image of the same tag.

A release is ``pulumi config set chart_version 1.1.0`` and ``pulumi up``; Kubernetes
rolls the pods. Config: ``chart_version`` and ``chart_repo`` (required), ``namespace``
(ml-model).
"""

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.helm.v3 import Chart, ChartOpts, FetchOpts

config = pulumi.Config()
chart_version = config.require("chart_version")
namespace_name = config.get("namespace") or "ml-model"

namespace = k8s.core.v1.Namespace("ml-model", metadata={"name": namespace_name})
chart = Chart(
    "ml-model",
    ChartOpts(
        chart="ml-model",
        version=chart_version,
        namespace=namespace_name,
        fetch_opts=FetchOpts(repo=config.require("chart_repo")),
        values={
            "replicaCount": 2,
            "image": {"tag": chart_version},
            "service": {"type": "NodePort", "nodePort": 30080},
        },
    ),
    pulumi.ResourceOptions(depends_on=[namespace]),
)
deployment = chart.get_resource("apps/v1/Deployment", "ml-model", namespace_name)

pulumi.export("chart_version", chart_version)
pulumi.export("ready_replicas", deployment.status.ready_replicas)
