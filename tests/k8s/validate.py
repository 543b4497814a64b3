#!/usr/bin/env python3
"""Static checks of the Kubernetes manifests (containers/k8s), run by CI
through tests/k8s/run.sh in a venv with kubernetes-validate and checkov.

1. The base and every overlay render with `kubectl kustomize`.
2. Built-in kinds pass `kubernetes-validate --strict` for the oldest and the
   newest Kubernetes we support (1.27: gRPC probes GA; 1.37: newest schema
   shipped), and a deliberately broken copy fails (the check bites).
3. Every NetworkAttachmentDefinition's config is JSON that its CNI plugins
   accept: known type, required keys with valid values, name = NAD name,
   bridge names at most 15 characters and unique.
4. The DaemonSet's Multus annotation names existing NADs, and every
   interface tapline.toml names is one the annotation creates.
5. The PrometheusRule passes `promtool check rules`; every metric that the
   rules and the Grafana dashboard use is one the sidecar
   exports (or a recording rule defined here).
6. checkov on every rendered overlay, with the skipped checks justified in
   tests/k8s/checkov.yaml.
"""

import copy
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(REPO, "containers/k8s")
VERSIONS = ["1.27.0", "1.37.0"]
BIN = os.path.dirname(sys.executable)

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"validate: {'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}",
          flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def builtin(doc):
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    return group == "" or group in ("apps", "batch", "policy") or group.endswith(".k8s.io") \
        and not group.startswith("k8s.cni.")


# ------------------------------------------------------------- NAD checks

def check_plugin(p, errors, where):
    t = p.get("type")
    if t == "macvlan":
        if not p.get("master"):
            errors.append(f"{where}: macvlan needs master")
        if p.get("mode") not in ("bridge", "private", "vepa", "passthru"):
            errors.append(f"{where}: macvlan mode {p.get('mode')!r}")
    elif t == "sriov":
        for k in ("spoofchk", "trust"):
            if p.get(k) not in ("on", "off"):
                errors.append(f"{where}: sriov {k} must be \"on\" or \"off\", is {p.get(k)!r}")
        if not isinstance(p.get("vlan"), int) or not 0 <= p["vlan"] <= 4094:
            errors.append(f"{where}: sriov vlan must be an integer 0..4094")
        if p.get("link_state", "auto") not in ("auto", "enable", "disable"):
            errors.append(f"{where}: sriov link_state {p.get('link_state')!r}")
    elif t == "bridge":
        b = p.get("bridge", "cni0")
        if not 1 <= len(b) <= 15:
            errors.append(f"{where}: bridge name {b!r} longer than 15 characters")
        for k in ("isGateway", "ipMasq", "promiscMode", "hairpinMode"):
            if k in p and not isinstance(p[k], bool):
                errors.append(f"{where}: bridge {k} must be a boolean")
        if p.get("isGateway") or p.get("ipMasq"):
            errors.append(f"{where}: a tool link bridge must not route or masquerade")
    elif t == "tuning":
        if "promisc" in p and not isinstance(p["promisc"], bool):
            errors.append(f"{where}: tuning promisc must be a boolean")
        for k, v in p.get("sysctl", {}).items():
            if not k.startswith("net.") or not isinstance(v, str):
                errors.append(f"{where}: tuning sysctl {k}={v!r} (net.* keys, string values)")
    else:
        errors.append(f"{where}: unexpected CNI type {t!r}")
        return
    if t != "tuning":
        ipam = p.get("ipam")
        if ipam != {}:
            errors.append(f"{where}: sensor and tool links carry no address (ipam must be {{}}), got {ipam!r}")


def check_nads(name, docs):
    errors = []
    bridges = {}
    nads = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkAttachmentDefinition"}
    for n, d in nads.items():
        try:
            conf = json.loads(d["spec"]["config"])
        except json.JSONDecodeError as e:
            errors.append(f"{n}: config is not JSON: {e}")
            continue
        if conf.get("name") != n:
            errors.append(f"{n}: config name {conf.get('name')!r} differs from the NAD name")
        if conf.get("cniVersion") not in ("0.4.0", "1.0.0"):
            errors.append(f"{n}: cniVersion {conf.get('cniVersion')!r}")
        plugins = conf.get("plugins", [conf])
        if not plugins or plugins[0].get("type") == "tuning":
            errors.append(f"{n}: the first plugin must create the interface")
        for i, p in enumerate(plugins):
            check_plugin(p, errors, f"{n} plugin {i}")
            if p.get("type") == "bridge":
                b = p.get("bridge")
                if b in bridges:
                    errors.append(f"{n}: bridge {b} also used by {bridges[b]}")
                bridges[b] = n
            if p.get("type") == "sriov" and not d["metadata"].get("annotations", {}).get(
                    "k8s.v1.cni.cncf.io/resourceName"):
                errors.append(f"{n}: an sriov NAD needs the resourceName annotation")
    check(f"{name}: {len(nads)} NAD configs valid for their CNI types", not errors, "; ".join(errors))
    return nads


def check_wiring(name, docs, nads):
    errors = []
    for ds in (d for d in docs if d["kind"] == "DaemonSet"):
        ann = ds["spec"]["template"]["metadata"].get("annotations", {})
        if "k8s.v1.cni.cncf.io/networks" not in ann:
            continue
        nets = json.loads(ann["k8s.v1.cni.cncf.io/networks"])
        ifaces = [n["interface"] for n in nets]
        if len(set(ifaces)) != len(ifaces):
            errors.append(f"{ds['metadata']['name']}: duplicate interface names")
        for n in nets:
            if n["name"] not in nads:
                errors.append(f"{ds['metadata']['name']}: network {n['name']} has no NAD")
        if ds["metadata"]["name"] == "tapline":
            cm_name = next(v["configMap"]["name"] for v in ds["spec"]["template"]["spec"]["volumes"]
                           if v["name"] == "config")
            cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name)
            cfg = tomllib.loads(cm["data"]["tapline.toml"])
            used = list(cfg.get("interfaces", {}).values())
            for h in cfg.get("chain", {}).get("hops", []):
                used += [h["a"], h["b"]]
            for g in cfg.get("output_group", []):
                used += g["members"]
            for u in used:
                if u not in ifaces:
                    errors.append(f"tapline.toml names {u}, which the Multus annotation does not create")
            for i in ifaces:
                if i not in used:
                    errors.append(f"the annotation creates {i}, which tapline.toml does not use")
            # Every container of the pod in the Guaranteed QoS class.
            for c in ds["spec"]["template"]["spec"]["containers"]:
                r = c.get("resources", {})
                if r.get("requests") != r.get("limits") or "cpu" not in r.get("limits", {}):
                    errors.append(f"container {c['name']}: requests != limits (not Guaranteed)")
    check(f"{name}: Multus networks, NADs and tapline.toml agree", not errors, "; ".join(errors))


# ---------------------------------------------------------------- metrics

# Where the /metrics families are declared: the sidecar's renderer
# (control/src/metrics/, control/src/fallback.rs) and the counter families
# of the stats segment (segment/src/). Test modules are left out.
METRIC_SOURCES = ("control/src", "segment/src")


def exported_metrics():
    src = ""
    for top in METRIC_SOURCES:
        for root, _, files in os.walk(os.path.join(REPO, top)):
            for f in sorted(files):
                if f.endswith(".rs") and f != "tests.rs" and "/bin/" not in root + "/":
                    src += open(os.path.join(root, f)).read() + "\n"
    names = set(re.findall(r'"(tapline_[a-z0-9_]*[a-z0-9])"', src))
    for n in list(names):
        if re.search(rf'"{n}"[^;]*"histogram"', src, re.S) or n.endswith("_round_trip_seconds"):
            names |= {n + "_bucket", n + "_sum", n + "_count"}
    return names


def used_metrics(text):
    return set(re.findall(r"\b(tapline_[a-z0-9_]*[a-z0-9])\b", text))


def check_monitoring(name, docs, tmp):
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    if not rules:
        return
    exported = exported_metrics()
    for r in rules:
        path = os.path.join(tmp, name.replace("/", "-") + "-rules.yaml")
        with open(path, "w") as f:
            yaml.safe_dump({"groups": r["spec"]["groups"]}, f)
        p = run(["promtool", "check", "rules", path])
        check(f"{name}: promtool check rules", p.returncode == 0, p.stdout)
        if name == "base":
            tdir = os.path.join(tmp, "alerts-test")
            os.makedirs(tdir)
            os.rename(path, os.path.join(tdir, "rules.yaml"))
            with open(os.path.join(REPO, "tests/k8s/alerts.test.yaml")) as src, \
                    open(os.path.join(tdir, "alerts.test.yaml"), "w") as dst:
                dst.write(src.read())
            p = run(["promtool", "test", "rules", "alerts.test.yaml"], cwd=tdir)
            check("promtool test rules: alerts fire (and stay quiet) as intended", p.returncode == 0, p.stdout)
        text = json.dumps(r["spec"])
        unknown = used_metrics(text) - exported
        check(f"{name}: alert metrics exported by the sidecar (control/src, segment/src)", not unknown, str(sorted(unknown)))
    for cm in (d for d in docs if d["kind"] == "ConfigMap"
               and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"):
        for k, v in cm["data"].items():
            dash = json.loads(v)
            exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
            unknown = used_metrics(exprs) - exported
            check(f"{name}: dashboard {k}: JSON, metrics exported by the sidecar (control/src, segment/src)",
                  not unknown and dash["panels"], str(sorted(unknown)))


def main():
    tmp = tempfile.mkdtemp(prefix="tapline-k8s-")
    dirs = [os.path.join(K8S, "base")] + sorted(glob.glob(os.path.join(K8S, "overlays", "*")))
    overlays = []
    for d in dirs:
        name = os.path.relpath(d, K8S)
        p = run(["kubectl", "kustomize", d])
        check(f"{name}: renders with kubectl kustomize", p.returncode == 0, p.stdout)
        if p.returncode != 0:
            continue
        rendered = os.path.join(tmp, name.replace("/", "-") + ".yaml")
        with open(rendered, "w") as f:
            f.write(p.stdout)
        docs = [x for x in yaml.safe_load_all(p.stdout) if x]

        builtins = [x for x in docs if builtin(x)]
        bpath = rendered + ".builtin.yaml"
        with open(bpath, "w") as f:
            yaml.safe_dump_all(builtins, f)
        for v in VERSIONS:
            q = run([os.path.join(BIN, "kubernetes-validate"), "--strict", "--quiet", "-k", v, bpath])
            check(f"{name}: {len(builtins)} built-in objects pass kubernetes-validate --strict {v}",
                  q.returncode == 0, q.stdout)

        nads = check_nads(name, docs)
        if name != "base":
            check_wiring(name, docs, nads)
        check_monitoring(name, docs, tmp)

        if name != "base":
            overlays.append(rendered)

    # One checkov run for all overlays (its start-up dominates its time).
    files = [a for f in overlays for a in ("-f", f)]
    q = run([os.path.join(BIN, "checkov"), "--quiet", "--compact", "--framework", "kubernetes",
             "--config-file", os.path.join(REPO, "tests/k8s/checkov.yaml")] + files)
    check(f"checkov on {len(overlays)} rendered overlays (skips justified in tests/k8s/checkov.yaml)",
          q.returncode == 0 and len(overlays) == len(dirs) - 1, q.stdout[-4000:])

    # The strict validation bites: an unknown field in the DaemonSet fails.
    docs = [x for x in yaml.safe_load_all(open(os.path.join(tmp, "overlays-macvlan.yaml"))) if x]
    broken = copy.deepcopy(next(x for x in docs if x["kind"] == "DaemonSet"))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalaton"] = False
    bpath = os.path.join(tmp, "broken.yaml")
    with open(bpath, "w") as f:
        yaml.safe_dump(broken, f)
    q = run([os.path.join(BIN, "kubernetes-validate"), "--strict", "--quiet", "-k", VERSIONS[0], bpath])
    check("kubernetes-validate --strict rejects a misspelt securityContext field", q.returncode != 0, q.stdout)

    passed = sum(results)
    failed = len(results) - passed
    print(f"validate: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
