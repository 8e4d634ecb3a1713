"""Settings of orchestrator scaling (``scaling:``): the Kubernetes and Nomad scale plugins,
the desired-replicas signal, the KEDA external scaler and the scale-from-zero hold.

Credentials never live in the file: Kubernetes uses in-cluster service-account auth, a
kubeconfig, or ``token_file``; Nomad reads its ACL token from ``token_env`` or ``token_file``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from switchgear.settings.base import Section


class KubernetesTarget(Section):
    """The workload whose ``scale`` subresource holds a model's replica count."""

    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    name: str
    namespace: str | None = None


class KubernetesScaling(Section):
    """``auth``: ``in-cluster`` (service account), ``kubeconfig`` (``kubeconfig``/``context``,
    default ``~/.kube/config``) or ``token`` (``host`` + bearer token from ``token_file``)."""

    auth: Literal["in-cluster", "kubeconfig", "token"] = "in-cluster"
    kubeconfig: str | None = None
    context: str | None = None
    host: str | None = None
    token_file: str | None = None
    verify_ssl: bool = True
    namespace: str = "default"
    targets: dict[str, KubernetesTarget] = Field(default_factory=dict)
    timeout_s: float = Field(10.0, gt=0)
    #: A 409 (stale resourceVersion) re-reads the scale and tries again, at most this often.
    conflict_retries: int = Field(5, ge=0)

    @model_validator(mode="after")
    def _auth(self) -> KubernetesScaling:
        if self.auth == "token" and not (self.host and self.token_file):
            raise ValueError("auth: token needs host and token_file")
        return self


class NomadTarget(Section):
    job: str
    group: str


class NomadScaling(Section):
    address: str = "http://127.0.0.1:4646"
    namespace: str | None = None
    region: str | None = None
    #: The ACL token (``X-Nomad-Token``) comes from this variable or file; neither = no ACL.
    token_env: str | None = "NOMAD_TOKEN"
    token_file: str | None = None
    #: The cluster enforces ACLs: a missing token is an error at start, not a 403 later.
    acl: bool = False
    targets: dict[str, NomadTarget] = Field(default_factory=dict)
    timeout_s: float = Field(10.0, gt=0)


class ModelBounds(Section):
    min_replicas: int = Field(0, ge=0)
    max_replicas: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _order(self) -> ModelBounds:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class KedaSettings(Section):
    """The KEDA external scaler (gRPC, ``externalscaler.proto``), served by ``switchgear serve``."""

    enabled: bool = False
    host: str = "0.0.0.0"
    port: int = Field(9090, ge=0, le=65535)
    #: How often ``StreamIsActive`` re-sends the activity of a model that did not change.
    stream_interval_s: float = Field(5.0, gt=0)


class ScalingSection(Section):
    kubernetes: KubernetesScaling | None = None
    nomad: NomadScaling | None = None
    #: How far ahead the desired-replicas signal looks (how long a new replica takes to serve).
    lead_time_s: float = Field(120.0, gt=0)
    #: Capacity is learned from requests answered within this latency.
    target_latency_s: float = Field(2.0, gt=0)
    #: Per-replica requests/s assumed before any throughput was observed.
    default_capacity_rps: float = Field(1.0, gt=0)
    #: Requests/s averaged over this window feed the forecaster.
    window_s: float = Field(60.0, gt=0)
    default_bounds: ModelBounds = Field(default_factory=ModelBounds)
    models: dict[str, ModelBounds] = Field(default_factory=dict)
    cooldown_s: float = Field(60.0, ge=0)
    #: Scale-in uses the highest recommendation of this window (no flapping).
    stabilization_s: float = Field(300.0, ge=0)
    keda: KedaSettings = Field(default_factory=KedaSettings)
    #: A request for a model with no ready replica waits this long for one (0 = answer 503 now).
    cold_start_wait_s: float = Field(0.0, ge=0)
    cold_start_retry_after_s: int = Field(30, ge=1)

    def bounds(self, model: str) -> ModelBounds:
        return self.models.get(model, self.default_bounds)
