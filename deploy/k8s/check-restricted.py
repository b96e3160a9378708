#!/usr/bin/env python3
"""Checks that every Pod template in rendered manifests meets Pod Security "restricted".

Usage: check-restricted.py RENDERED.yaml  (the output of `kubectl kustomize <overlay>`)

The reference check is the API server's admission plugin, which needs a cluster; no kept
package runs it offline, so this script checks the profile's controls as the Kubernetes
documentation lists them (kubernetes.io/docs/concepts/security/pod-security-standards), plus
what Roster promises on top: a read-only root filesystem, no API token, and resources set.
Prints one line per failure and exits 1 if there is any.
"""

import sys

import yaml

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {
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


def pod_spec(doc):
    kind = doc.get("kind")
    if kind == "Pod":
        return doc.get("spec", {})
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"].get("spec", {})
    if kind in POD_TEMPLATE_KINDS:
        return doc["spec"]["template"].get("spec", {})
    return None


def failures(spec):
    pod_ctx = spec.get("securityContext") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or []) + (spec.get("ephemeralContainers") or [])
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield f"{field} is set"
    if spec.get("automountServiceAccountToken") is not False:
        yield "automountServiceAccountToken is not false"
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            yield f"volume {volume.get('name')} is of a type restricted forbids: {sorted(kinds - ALLOWED_VOLUMES)}"
    for sysctl in pod_ctx.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"sysctl {sysctl.get('name')} is not in the safe set"
    if pod_ctx.get("runAsUser") == 0:
        yield "the Pod runs as user 0"
    for option in ("user", "role"):
        if (pod_ctx.get("seLinuxOptions") or {}).get(option):
            yield f"the Pod sets seLinuxOptions.{option}"
    for container in containers:
        name = container.get("name")
        ctx = container.get("securityContext") or {}
        if ctx.get("privileged"):
            yield f"{name}: privileged"
        if ctx.get("allowPrivilegeEscalation") is not False:
            yield f"{name}: allowPrivilegeEscalation is not false"
        run_as_non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        if run_as_non_root is not True:
            yield f"{name}: runAsNonRoot is not true"
        if ctx.get("runAsUser") == 0:
            yield f"{name}: runs as user 0"
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"{name}: seccompProfile is {seccomp!r}, not RuntimeDefault or Localhost"
        capabilities = ctx.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            yield f"{name}: capabilities do not drop ALL"
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            yield f"{name}: adds capabilities {sorted(added)}"
        if ctx.get("procMount") not in (None, "Default"):
            yield f"{name}: procMount is {ctx.get('procMount')}"
        if (ctx.get("appArmorProfile") or {}).get("type") == "Unconfined":
            yield f"{name}: AppArmor is unconfined"
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                yield f"{name}: uses hostPort {port['hostPort']}"
        if ctx.get("readOnlyRootFilesystem") is not True:
            yield f"{name}: the root filesystem is writable"
        resources = container.get("resources") or {}
        if not (resources.get("requests") and (resources.get("limits") or {}).get("memory")):
            yield f"{name}: no resource requests or memory limit"


def main(path):
    with open(path, encoding="utf-8") as rendered:
        docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    found, checked = [], 0
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        checked += 1
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        found.extend(f"{path}: {where}: {failure}" for failure in failures(spec))
    for line in found:
        print(line)
    if checked == 0:
        print(f"{path}: no Pod templates found")
        return 1
    print(f"{path}: {checked} Pod templates checked, {len(found)} failures")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
