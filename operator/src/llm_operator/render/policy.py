"""The boundary an LLMDeployment's pods stay inside (issue 18, item 9). Pure.

Checked over the rendered Deployment's pod template, after the `server.podTemplate` merge,
so a field cannot escape through a path that was not checked (`model.uri: file://` becomes
a hostPath volume here like any other). The rules are the Pod Security Standards'
`restricted` profile, plus what the operator's settings decide:

- hostPath volumes only under `allowed_host_paths` (none by default: file:// is refused);
- images only from `allowed_image_registries` (default: the operator's own image repository);
- Secrets (env secretKeyRef, envFrom, secret/projected volumes, CSI secret refs) only when
  their name matches `allowed_secrets` (shell-style patterns) or is the spec's API-key
  Secret (`server.apiKeySecret`);
- no service account but the namespace's `default`, and no token, unless listed in
  `allowed_service_accounts`; hostNetwork/hostPID/hostIPC only with `allow_host_namespaces`.

A violation is a permanent error: decide() reports it as Failed / Degraded=True
`PolicyViolation` with one Warning Event, and nothing is applied.
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_operator.api.resource import LLMDeployment
    from llm_operator.catalog import Catalog
    from llm_operator.render.settings import RenderSettings

POLICY_VIOLATION = "PolicyViolation"

# Volume types the restricted profile allows (hostPath is checked against the prefixes;
# `image` is what oci:// model URIs render, read-only content from a registry).
_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
        "image",
        "hostPath",
    }
)
_SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class PodPolicy:
    allowed_host_paths: tuple[str, ...] = ()  # absolute prefixes, e.g. /models
    allowed_image_registries: tuple[str, ...] = ()  # empty: the operator's image repository
    allowed_secrets: tuple[str, ...] = ("hf-token", "llm-*")  # fnmatch patterns of names
    allowed_service_accounts: tuple[str, ...] = ()  # besides the namespace's default
    allow_host_namespaces: bool = False


@dataclass(frozen=True)
class Violation:
    field: str  # the Deployment's field, e.g. spec.template.spec.hostNetwork
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def under_prefix(path: str, prefixes: tuple[str, ...]) -> bool:
    """`path` (normalized: no `..` escapes) equals or lies below one of `prefixes`."""
    if not path.startswith("/"):
        return False
    normal = posixpath.normpath(path)
    for prefix in prefixes:
        base = posixpath.normpath(prefix)
        if base == "/" or normal == base or normal.startswith(base + "/"):
            return True
    return False


def image_allowed(image: str, registries: tuple[str, ...]) -> bool:
    """`image` is one of the `registries` prefixes, or below it (`/`, `:` or `@` follows)."""
    for prefix in registries:
        if prefix.endswith("/") and image.startswith(prefix) and len(image) > len(prefix):
            return True
        if image == prefix or (image.startswith(prefix) and image[len(prefix)] in "/:@"):
            return True
    return False


def objects_violations(
    objects: list[dict[str, Any]],
    policy: PodPolicy,
    default_registry: str,
    api_key_secret: str | None = None,
) -> tuple[Violation, ...]:
    """The violations of every rendered object with a pod template (the Deployment)."""
    out: list[Violation] = []
    for obj in objects:
        if obj.get("kind") == "Deployment":
            out += deployment_violations(obj, policy, default_registry, api_key_secret)
    return tuple(out)


def policy_check(
    resource: LLMDeployment,
    catalog: Catalog,
    settings: RenderSettings,
    rendered: list[dict[str, Any]] | None = None,
) -> tuple[Violation, ...]:
    """`llmops validate`/`render`: the violations of the primary option's objects (none when
    the spec does not resolve; that is reported elsewhere)."""
    if rendered is None:
        from llm_operator.render.objects import desired_objects  # a cycle at import time
        from llm_operator.resolve import resolve

        resolution = resolve(resource.spec, catalog, None)
        if not resolution.ok:
            return ()
        rendered = desired_objects(resource, resolution, settings)
    return objects_violations(
        rendered,
        settings.pod_policy,
        settings.image_repository,
        api_key_secret_name(resource.spec.server),
    )


def api_key_secret_name(server: Any) -> str | None:
    """The Secret `server.apiKeySecret` names (a name, or a {name, key} reference), if any."""
    ref = getattr(server, "api_key_secret", None)
    if isinstance(ref, str):
        return ref or None
    name = getattr(ref, "name", None)
    return name if isinstance(name, str) and name else None


def deployment_violations(
    deployment: Mapping[str, Any],
    policy: PodPolicy,
    default_registry: str,
    api_key_secret: str | None = None,
) -> tuple[Violation, ...]:
    """Every way the Deployment's pod template leaves the boundary (empty: none)."""
    template = (deployment.get("spec") or {}).get("template") or {}
    return tuple(_pod(template, policy, default_registry, api_key_secret))


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _pod(
    template: Mapping[str, Any],
    policy: PodPolicy,
    default_registry: str,
    api_key_secret: str | None,
) -> Iterator[Violation]:
    base = "spec.template.spec"
    spec = _dict(template.get("spec"))
    annotations = _dict(_dict(template.get("metadata")).get("annotations"))
    for key, value in annotations.items():
        if str(key).startswith("container.apparmor.security.beta.kubernetes.io/") and (
            str(value) == "unconfined"
        ):
            yield Violation(f"spec.template.metadata.annotations[{key}]", "unconfined AppArmor")
    if not policy.allow_host_namespaces:
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key) is True:
                yield Violation(f"{base}.{key}", "host namespaces are not allowed")
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if account != "default" and account not in policy.allowed_service_accounts:
        field = "serviceAccountName" if spec.get("serviceAccountName") else "serviceAccount"
        yield Violation(f"{base}.{field}", f"service account {account!r} is not allowed")
    if spec.get("automountServiceAccountToken") is True and (
        account not in policy.allowed_service_accounts
    ):
        yield Violation(
            f"{base}.automountServiceAccountToken",
            f"a token of service account {account!r} is not allowed",
        )
    pod_context = _dict(spec.get("securityContext"))
    yield from _security_context(pod_context, f"{base}.securityContext", pod=True)
    for sysctl in _list(pod_context.get("sysctls")):
        name = str(_dict(sysctl).get("name"))
        if name not in _SAFE_SYSCTLS:
            yield Violation(f"{base}.securityContext.sysctls[{name}]", "unsafe sysctl")
    pod_non_root = pod_context.get("runAsNonRoot") is True
    pod_user = pod_context.get("runAsUser")
    for index, volume in enumerate(_list(spec.get("volumes"))):
        yield from _volume(_dict(volume), index, policy, api_key_secret)
    registries = policy.allowed_image_registries or (default_registry,)
    for list_name in _CONTAINER_LISTS:
        for container in _list(spec.get(list_name)):
            c = _dict(container)
            path = f"{base}.{list_name}[{c.get('name')}]"
            image = str(c.get("image") or "")
            if not image_allowed(image, registries):
                allowed = ", ".join(registries)
                yield Violation(f"{path}.image", f"{image!r} is not from {allowed}")
            yield from _container(c, path, policy, api_key_secret)
            context = _dict(c.get("securityContext"))
            user = context.get("runAsUser", pod_user)
            non_root = context.get("runAsNonRoot", pod_non_root)
            if non_root is not True and (not isinstance(user, int) or user == 0):
                yield Violation(f"{path}.securityContext.runAsNonRoot", "must be true")


def _security_context(context: Mapping[str, Any], path: str, pod: bool) -> Iterator[Violation]:
    if context.get("runAsNonRoot") is False:
        yield Violation(f"{path}.runAsNonRoot", "must not be false")
    if context.get("runAsUser") == 0:
        yield Violation(f"{path}.runAsUser", "root (0) is not allowed")
    seccomp = _dict(context.get("seccompProfile")).get("type")
    if seccomp is not None and seccomp not in ("RuntimeDefault", "Localhost"):
        yield Violation(f"{path}.seccompProfile.type", f"{seccomp} is not allowed")
    apparmor = _dict(context.get("appArmorProfile")).get("type")
    if apparmor == "Unconfined":
        yield Violation(f"{path}.appArmorProfile.type", "Unconfined is not allowed")
    selinux = _dict(context.get("seLinuxOptions"))
    if selinux.get("user") or selinux.get("role"):
        yield Violation(f"{path}.seLinuxOptions", "a custom SELinux user or role is not allowed")
    if str(selinux.get("type") or "") not in _SELINUX_TYPES:
        yield Violation(f"{path}.seLinuxOptions.type", "this SELinux type is not allowed")
    if _dict(context.get("windowsOptions")).get("hostProcess") is True:
        yield Violation(f"{path}.windowsOptions.hostProcess", "host processes are not allowed")
    if pod:
        return
    if context.get("privileged") is True:
        yield Violation(f"{path}.privileged", "privileged containers are not allowed")
    if context.get("allowPrivilegeEscalation") is not False:
        yield Violation(f"{path}.allowPrivilegeEscalation", "must be false")
    capabilities = _dict(context.get("capabilities"))
    added = [c for c in _list(capabilities.get("add")) if c != "NET_BIND_SERVICE"]
    if added:
        yield Violation(f"{path}.capabilities.add", f"{added} may not be added")
    if "ALL" not in _list(capabilities.get("drop")):
        yield Violation(f"{path}.capabilities.drop", "must include ALL")
    if context.get("procMount") not in (None, "Default"):
        yield Violation(f"{path}.procMount", "must be Default")


# Words of a flag name that say its value is a credential (`--hf-token`, `--api-key`,
# `--db-password`); `--max-num-batched-tokens` or `--tokenizer` are not.
_SECRET_WORDS = frozenset(
    {"token", "secret", "secrets", "password", "passwd", "apikey", "credential", "credentials"}
)
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("auth", "key")})
_SECRET_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9_-]{20,})$")


def secret_argument(arg: str) -> bool:
    """`arg` names a credential (`--api-key=...`, `--hf-token`) or is one (`hf_...`, `sk-...`):
    arguments are copied into the ConfigMap and the pod spec, readable by anyone who can read
    those, so a secret belongs in env from a Secret."""
    if _SECRET_VALUE.match(arg):
        return True
    if not arg.startswith("-"):
        return False
    words = re.split(r"[-_.]+", arg.lstrip("-").split("=", 1)[0].lower())
    pairs = set(itertools.pairwise(words))
    return bool(_SECRET_WORDS.intersection(words) or _SECRET_PAIRS & pairs)


def _container(
    c: Mapping[str, Any], path: str, policy: PodPolicy, api_key_secret: str | None
) -> Iterator[Violation]:
    for key in ("command", "args"):
        for index, arg in enumerate(_list(c.get(key))):
            if isinstance(arg, str) and secret_argument(arg):
                shown = "a token" if _SECRET_VALUE.match(arg) else repr(arg.split("=", 1)[0][:40])
                yield Violation(
                    f"{path}.{key}[{index}]",
                    f"{shown} looks like a secret (spec.server.args are "
                    "copied into the ConfigMap and the pod spec): pass it as env from a Secret "
                    "(server.env valueFrom.secretKeyRef, or server.apiKeySecret for API keys)",
                )
    yield from _security_context(_dict(c.get("securityContext")), f"{path}.securityContext", False)
    for port in _list(c.get("ports")):
        if _dict(port).get("hostPort"):
            yield Violation(f"{path}.ports[{_dict(port).get('containerPort')}].hostPort",
                            "host ports are not allowed")  # fmt: skip
    for var in _list(c.get("env")):
        ref = _dict(_dict(_dict(var).get("valueFrom")).get("secretKeyRef"))
        if ref and not _secret_allowed(ref.get("name"), policy, api_key_secret):
            field = f"{path}.env[{_dict(var).get('name')}].valueFrom.secretKeyRef.name"
            yield _secret_violation(field, ref.get("name"), policy)
    for index, source in enumerate(_list(c.get("envFrom"))):
        ref = _dict(_dict(source).get("secretRef"))
        if ref and not _secret_allowed(ref.get("name"), policy, api_key_secret):
            field = f"{path}.envFrom[{index}].secretRef.name"
            yield _secret_violation(field, ref.get("name"), policy)


def _volume(
    volume: Mapping[str, Any], index: int, policy: PodPolicy, api_key_secret: str | None
) -> Iterator[Violation]:
    path = f"spec.template.spec.volumes[{volume.get('name', index)}]"
    for kind in volume:
        if kind != "name" and kind not in _VOLUME_TYPES:
            yield Violation(f"{path}.{kind}", f"{kind} volumes are not allowed")
    if "hostPath" in volume:
        host = str(_dict(volume["hostPath"]).get("path") or "")
        if not under_prefix(host, policy.allowed_host_paths):
            allowed = ", ".join(policy.allowed_host_paths) or "none"
            hint = " (from spec.model.uri file://)" if volume.get("name") == "model" else ""
            yield Violation(
                f"{path}.hostPath.path",
                f"{host!r}{hint} is not under an allowed host path (allowed: {allowed})",
            )
    names: list[tuple[str, Any]] = []
    if "secret" in volume:
        names.append((f"{path}.secret.secretName", _dict(volume["secret"]).get("secretName")))
    for i, source in enumerate(_list(_dict(volume.get("projected")).get("sources"))):
        if "secret" in _dict(source):
            name = _dict(_dict(source)["secret"]).get("name")
            names.append((f"{path}.projected.sources[{i}].secret.name", name))
    csi_ref = _dict(_dict(volume.get("csi")).get("nodePublishSecretRef"))
    if csi_ref:
        names.append((f"{path}.csi.nodePublishSecretRef.name", csi_ref.get("name")))
    for field, name in names:
        if not _secret_allowed(name, policy, api_key_secret):
            yield _secret_violation(field, name, policy)


def _secret_allowed(name: Any, policy: PodPolicy, api_key_secret: str | None) -> bool:
    if not isinstance(name, str) or not name:
        return False
    if api_key_secret is not None and name == api_key_secret:
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in policy.allowed_secrets)


def _secret_violation(field: str, name: Any, policy: PodPolicy) -> Violation:
    allowed = ", ".join(policy.allowed_secrets) or "none"
    return Violation(field, f"Secret {name!r} is not allowed (allowed names: {allowed})")


# The flags: the operator's (settings.py) and `llmops render`/`validate` share them.
def _items(values: list[str] | None) -> tuple[str, ...]:
    """Repeated and/or comma-separated flag values, blanks dropped."""
    return tuple(v.strip() for value in values or [] for v in value.split(",") if v.strip())


def add_policy_arguments(p: argparse.ArgumentParser) -> None:
    """The pods' boundary (render/policy.py); shared with `llmops render`/`validate`."""
    defaults = PodPolicy()
    p.add_argument(
        "--allowed-host-paths",
        action="append",
        metavar="PREFIX",
        help="hostPath prefixes pods may mount, e.g. /models (repeat or comma-separate); "
        "default none: model.uri file:// is refused",
    )
    p.add_argument(
        "--allowed-image-registries",
        action="append",
        metavar="PREFIX",
        help="image prefixes server.image and podTemplate containers may use "
        "(default: the --image-repository)",
    )
    p.add_argument(
        "--allowed-secrets",
        action="append",
        metavar="PATTERN",
        help="names (shell patterns) of the Secrets pods may read through env, envFrom or "
        f"volumes (default {','.join(defaults.allowed_secrets)}; plus server.apiKeySecret)",
    )
    p.add_argument(
        "--allowed-service-accounts",
        action="append",
        metavar="NAME",
        help="service accounts a podTemplate may set, with a token (default: none)",
    )
    p.add_argument(
        "--allow-host-namespaces",
        action="store_true",
        help="let a podTemplate set hostNetwork / hostPID / hostIPC",
    )


def policy_from_args(args: argparse.Namespace) -> PodPolicy:
    defaults = PodPolicy()
    given = getattr(args, "allowed_secrets", None)  # `--allowed-secrets=`: none at all
    return PodPolicy(
        allowed_host_paths=_items(getattr(args, "allowed_host_paths", None)),
        allowed_image_registries=_items(getattr(args, "allowed_image_registries", None)),
        allowed_secrets=defaults.allowed_secrets if given is None else _items(given),
        allowed_service_accounts=_items(getattr(args, "allowed_service_accounts", None)),
        allow_host_namespaces=bool(getattr(args, "allow_host_namespaces", False)),
    )
