"""kube-controller-manager and kube-scheduler, started the way kubeadm runs them.

Each authenticates with its own client certificate (CN ``system:kube-controller-manager`` /
``system:kube-scheduler``), which the apiserver's bootstrap RBAC policy binds to the roles of the same
name, exactly as in a kubeadm cluster; no RBAC is added here. Both serve HTTPS on loopback with a
certificate from the stack's CA and delegate authentication and authorization of their own endpoints
to the apiserver. Leader election is off: there is one of each, and a restarted process must not wait
for its predecessor's lease to expire.
"""

from __future__ import annotations

from devstack.component import ClusterComponent, Context, Unhealthy, binaries, http_get
from devstack.pki import CONTROLLER_MANAGER, SCHEDULER, ClientIdentity
from devstack.proc import LOOPBACK


class _SecureComponent(ClusterComponent):
    """A Kubernetes component with a secure port: /healthz is checked over verified TLS as admin."""

    base_deps = ("kube-apiserver",)
    startup_timeout = 60.0
    identity: ClientIdentity
    serving: str  # stem of the serving certificate in the PKI

    def url(self, ports: dict[str, int]) -> str:
        return f"https://{LOOPBACK}:{ports['main']}"

    def common_flags(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        kubeconfig = ctx.component_kubeconfig(self.identity)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--client-ca-file={ctx.pki.ca_cert}",
            # The CA is given: do not look it (and a front-proxy CA the stack does not have) up in
            # kube-system/extension-apiserver-authentication, which only logs errors in a loop.
            "--authentication-skip-lookup=true",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={ports['main']}",
            f"--tls-cert-file={ctx.pki.cert(self.serving)}",
            f"--tls-private-key-file={ctx.pki.key(self.serving)}",
            "--leader-elect=false",
            "--v=1",
        ]

    def prepare(self, ctx: Context) -> None:
        binaries(ctx)

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        status, body = http_get(f"{self.url(ports)}/healthz", context=ctx.admin_ssl_context())
        if status != 200 or body.strip() != b"ok":
            raise Unhealthy(f"{self.name} /healthz: {status} {body[-300:]!r}")


class KubeControllerManager(_SecureComponent):
    base_name = "kube-controller-manager"
    identity = CONTROLLER_MANAGER
    serving = "kube-controller-manager-serving"

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        return [
            str(binaries(ctx).kube_controller_manager),
            *self.common_flags(ctx, ports),
            # The default controllers (deployment, replicaset, namespace, garbagecollector,
            # serviceaccount, serviceaccount-token, clusterrole-aggregation, job, node-lifecycle, ...),
            # each with its own ServiceAccount's credentials, as kubeadm configures them.
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={ctx.pki.sa_key}",
            f"--root-ca-file={ctx.pki.ca_cert}",
            f"--cluster-name={ctx.cluster.name}",
        ]


class KubeScheduler(_SecureComponent):
    base_name = "kube-scheduler"
    identity = SCHEDULER
    serving = "kube-scheduler-serving"

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        return [str(binaries(ctx).kube_scheduler), *self.common_flags(ctx, ports)]
