#!/usr/bin/env python3
"""Chart tests for helm/tenant-identity-operator, run by hack/chart/test.sh (`make test`).

Uses a real Helm v4 engine (PyPI helm-python-sdk, no helm binary) to lint and render the chart,
validates values against values.schema.json, validates every rendered object against its
Kubernetes type (kubernetes-validate strict JSON schemas for core kinds; prometheus-operator
models for ServiceMonitor/PrometheusRule), checks the Deployment's flags against the real
binary, checks the CRD for drift against `tenant-identity-operator crd`, and runs
`promtool check rules` / `promtool test rules` on the alerts.

Environment:
  TIO_BIN   path of the tenant-identity-operator binary (required for the binary checks)
  PROMTOOL  path of promtool (default: found on PATH)
  CHART_TEST_OUT  scratch directory (default: target/chart-test)
  KUBE_EMULATOR_AUDIT_DIR  the e2e suite's audit-style request records (default: target/e2e-audit)
  REQUIRE_RBAC_AUDIT=1 (or CI set)  fail, not skip, the RBAC usage check when there are none
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml
from cloudcoil.models.prometheus_operator import v1 as promv1

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tenant-identity-operator"
HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("CHART_TEST_OUT", ROOT / "target" / "chart-test"))
RELEASE, NAMESPACE = "tio", "tio-system"
# Kubernetes versions whose API schemas every rendered object must satisfy: the oldest the
# chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]

CLIENT_ID = "6f1c3a52-0d8e-4e55-9a3c-2f7b1d0c9e41"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"

# Every optional feature on.
ALL_ON = {
    "replicaCount": 2,
    "image": {"digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"example.com/owner": "platform"}, "labels": {"team": "platform"}},
    "azure": {
        "tenantId": TENANT_ID,
        "workloadIdentity": {"clientId": CLIENT_ID, "tenantId": TENANT_ID},
        "armEndpoint": "https://management.usgovcloudapi.net",
        "authorityHost": "https://login.microsoftonline.us/",
        "armApiVersion": "2024-11-30",
    },
    "oidc": {"issuerUrl": "https://eastus.oic.prod-aks.azure.com/72f988bf/1d3f/"},
    "security": {"requireNamespaceGrant": True},
    "verification": {"enabled": True, "interval": "30m", "grace": "2m", "concurrency": 8,
                     "azureDevOpsEndpoint": "https://devops-proxy.example.com"},
    "logging": {"format": "text", "level": "info,tenant_identity_operator=debug"},
    "extraEnv": [{"name": "EXTRA", "value": "1"}],
    "metrics": {
        "service": {"annotations": {"prometheus.io/scrape": "true"}},
        "serviceMonitor": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "relabelings": [{"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
            "metricRelabelings": [{"action": "drop", "regex": "go_.*", "sourceLabels": ["__name__"]}],
        },
    },
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "alertLabels": {"team": "platform"}},
    "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Platform"}, "labels": {"extra": "x"}},
    "networkPolicy": {
        "enabled": True,
        "egressCIDRs": ["10.0.0.0/8", "0.0.0.0/0"],
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    },
    "podAnnotations": {"example.com/a": "b"},
    "podLabels": {"example.com/l": "v"},
    "priorityClassName": "system-cluster-critical",
    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                                   "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "tenant-identity-operator"}}}],
}

# Named scenarios rendered and validated.
SCENARIOS = {
    "defaults": {},
    "all-features": ALL_ON,
    "replicas-2-minimal": {"replicaCount": 2, "leaderElection": {"enabled": False}},
    "no-leader-election": {"leaderElection": {"enabled": False}},
    "no-verification": {"verification": {"enabled": False}},
    "existing-serviceaccount": {"serviceAccount": {"create": False, "name": "my-sa"}, "rbac": {"flux": False, "azureServiceOperator": False}},
    "no-rbac": {"rbac": {"create": False}},
    "fullname-override": {"fullnameOverride": "tio", "dashboard": {"enabled": True, "namespace": "monitoring"}},
}

# Values the schema must reject (a typo or a wrong type anywhere must fail the install).
BAD_VALUES = {
    "top-level typo": {"replicaCont": 2},
    "nested typo": {"metrics": {"serviceMonitor": {"enable": True}}},
    "deep typo": {"azure": {"workloadIdentity": {"clientID": CLIENT_ID}}},
    "bad log format": {"logging": {"format": "xml"}},
    "client id not a GUID": {"azure": {"workloadIdentity": {"clientId": "team-a"}}},
    "http issuer": {"oidc": {"issuerUrl": "http://issuer.example/"}},
    "string for bool": {"security": {"requireNamespaceGrant": "yes"}},
    "negative replicas": {"replicaCount": -1},
    "bad duration": {"prometheusRule": {"notReadyFor": "15 minutes"}},
    "bad pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "bad digest": {"image": {"digest": "latest"}},
    "error ratio > 1": {"prometheusRule": {"reconcileErrorRatio": 2}},
    "resources typo": {"resources": {"request": {"cpu": "1"}}},
    "verification typo": {"verification": {"enable": False}},
    "string for verification bool": {"verification": {"enabled": "false"}},
    "bad verification interval": {"verification": {"interval": "1 hour"}},
    "zero verification concurrency": {"verification": {"concurrency": 0}},
    "http DevOps endpoint": {"verification": {"azureDevOpsEndpoint": "http://devops-proxy.example.com"}},
}


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

class Failure(AssertionError):
    pass


class Skipped(Exception):
    """A test that cannot run here; main() reports it as skipped, never as passed."""


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_chart = None


def chart():
    global _chart
    if _chart is None:
        _chart = helm.Chart.load(str(CHART))
    return _chart


_renders: dict[str, dict[str, str]] = {}


def render(values, name=RELEASE, namespace=NAMESPACE):
    key = json.dumps([values, name, namespace], sort_keys=True)
    if key not in _renders:
        _renders[key] = chart().render(values=values, name=name, namespace=namespace, is_install=True)
    return _renders[key]


def objects(values, **kw):
    """Rendered manifests parsed into objects: [(template, obj)] (NOTES.txt excluded)."""
    out = []
    for template, text in sorted(render(values, **kw).items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                out.append((template, doc))
    return out


def find(objs, kind, name=None):
    hits = [o for _, o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return hits


def one(objs, kind):
    hits = find(objs, kind)
    check(len(hits) == 1, f"expected exactly one {kind}, got {len(hits)}")
    return hits[0]


def deployment_args(values):
    dep = one(objects(values), "Deployment")
    return dep["spec"]["template"]["spec"]["containers"][0]["args"]


def tio_bin():
    path = os.environ.get("TIO_BIN")
    check(path and Path(path).is_file(), f"TIO_BIN must point at the built binary (got {path!r})")
    return path


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


# ------------------------------------------------------------------------------------------------
# lint and metadata
# ------------------------------------------------------------------------------------------------

def test_lint_strict_default_and_all_features():
    for label, values in (("defaults", None), ("all-features", ALL_ON)):
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        bad = [m for m in report["messages"] if m["severity"] >= 2]
        check(not bad and not report["errors"], f"helm lint --strict ({label}): {report}")


def test_lint_reports_schema_violation():
    report = helm.lint(str(CHART), {"logging": {"format": "xml"}}, strict=True)
    check(report["errors"], "helm lint accepted logging.format=xml")


def test_chart_metadata():
    meta = chart().metadata
    check(meta["apiVersion"] == "v2", "apiVersion v2")
    check(meta.get("kubeVersion") == ">=1.30.0-0", f"kubeVersion: {meta.get('kubeVersion')}")
    check(meta.get("appVersion"), "appVersion set")
    ann = meta.get("annotations") or {}
    for key in ("artifacthub.io/crds", "artifacthub.io/license", "artifacthub.io/links", "artifacthub.io/crdsExamples"):
        check(key in ann, f"annotation {key} missing")
    crds = yaml.safe_load(ann["artifacthub.io/crds"])
    check(isinstance(crds, list) and crds, "artifacthub.io/crds is a YAML list")
    names = {c["name"] for c in crds}
    shipped = {yaml.safe_load(c["data"])["metadata"]["name"] for c in chart().crds}
    check(shipped, "chart ships no CRD in crds/")
    check(names == shipped, f"artifacthub.io/crds {names} != crds/ {shipped}")
    for c in crds:
        check({"kind", "version", "name", "displayName", "description"} <= c.keys(), f"artifacthub crd entry {c}")
    links = yaml.safe_load(ann["artifacthub.io/links"])
    check(all({"name", "url"} <= l.keys() for l in links), "artifacthub.io/links entries have name and url")
    examples = yaml.safe_load(ann["artifacthub.io/crdsExamples"])
    check(examples[0]["kind"] == "TenantIdentity", "crdsExamples has a TenantIdentity")
    check(ann["artifacthub.io/license"] == "Apache-2.0", "license")


def test_package_contains_everything_the_templates_load():
    """`helm package` keeps crds/, dashboards/ and alerts/ (loaded with .Files) and renders the same."""
    OUT.mkdir(parents=True, exist_ok=True)
    archive = helm.package(str(CHART), destination=str(OUT))
    with helm.Chart.load(archive) as packaged:
        names = {f["name"] for f in packaged.files}
        for f in list((CHART / "dashboards").glob("*.json")) + list((CHART / "alerts").glob("*.yaml")):
            check(f"{f.parent.name}/{f.name}" in names, f"packaged chart lacks {f.parent.name}/{f.name}")
        check(len(packaged.crds) == len(chart().crds), "packaged chart lacks CRDs")
        check(packaged.render(values=ALL_ON, name=RELEASE, namespace=NAMESPACE) == render(ALL_ON),
              "packaged chart renders differently from the directory")


def test_default_image_is_app_version():
    meta = chart().metadata
    dep = one(objects({}), "Deployment")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    check(image == f"ghcr.io/tenancy-dev/tenant-identity-operator:{meta['appVersion']}", f"default image {image}")
    dep = one(objects({"image": {"tag": "v9"}}), "Deployment")
    check(dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v9"), "image.tag override")
    dep = one(objects(ALL_ON), "Deployment")
    check(dep["spec"]["template"]["spec"]["containers"][0]["image"] ==
          "ghcr.io/tenancy-dev/tenant-identity-operator@sha256:" + "a" * 64, "digest wins over tag")


# ------------------------------------------------------------------------------------------------
# values and schema
# ------------------------------------------------------------------------------------------------

def _schema():
    return json.loads((CHART / "values.schema.json").read_text())


def test_schema_accepts_defaults_and_scenarios():
    schema = _schema()
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, schema)
    for name, values in SCENARIOS.items():
        merged = deep_merge(defaults, values)
        jsonschema.validate(merged, schema)  # python jsonschema
        chart().validate_schema(values)       # Helm's own validator


def test_schema_rejects_bad_values():
    schema = _schema()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for label, values in BAD_VALUES.items():
        try:
            chart().validate_schema(values)
        except helm.HelmValuesError:
            pass
        else:
            raise Failure(f"Helm accepted bad values ({label}): {values}")
        try:
            render(values)
        except helm.HelmValuesError:
            pass
        else:
            raise Failure(f"helm template rendered bad values ({label}): {values}")
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(deep_merge(defaults, values)))
        check(errors, f"jsonschema accepted bad values ({label})")


def test_schema_is_strict_everywhere():
    """Every object the chart defines (not free-form Kubernetes passthroughs) forbids unknown keys."""
    passthrough = {"resources.requests", "resources.limits", "affinity", "global"}

    def walk(node, path):
        if node.get("type") == "object" and "properties" in node:
            check(node.get("additionalProperties") is False, f"schema {path or '<root>'}: additionalProperties must be false")
            for k, v in node["properties"].items():
                walk(v, f"{path}.{k}" if path else k)
        elif node.get("type") == "object" and path not in passthrough:
            check("additionalProperties" in node, f"schema {path}: free-form object without additionalProperties rule")
    walk(_schema(), "")


def _values_key_lines():
    """(path, line number, documented?) for every key line of values.yaml outside list values."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    list_indent = None
    out = []
    key_re = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):(\s|$)")
    for n, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if list_indent is not None:
            if indent > list_indent or (indent == list_indent and line.lstrip().startswith("-")):
                continue
            list_indent = None
        if line.lstrip().startswith("-"):
            list_indent = stack[-1][0] if stack else 0
            continue
        m = key_re.match(line)
        if not m:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        prev = next((lines[k] for k in range(n - 1, -1, -1) if lines[k].strip()), "")
        out.append((".".join(k for _, k in stack), n + 1, prev.lstrip().startswith("#")))
    return out


def test_values_documented_line_by_line_and_in_sync_with_schema():
    schema = _schema()
    keys = _values_key_lines()
    paths = {p for p, _, _ in keys}

    def walk(node, path):
        for k, sub in node.get("properties", {}).items():
            p = f"{path}.{k}" if path else k
            if k == "global":
                continue
            check(p in paths, f"values.schema.json property {p} has no default in values.yaml")
            strict_parent = sub.get("type") == "object" and sub.get("additionalProperties") is False and "properties" in sub
            if strict_parent:
                walk(sub, p)
            else:
                documented = next(d for q, _, d in keys if q == p)
                line = next(n for q, n, _ in keys if q == p)
                check(documented, f"values.yaml:{line}: `{p}` has no comment line above it")
    walk(schema, "")


# ------------------------------------------------------------------------------------------------
# rendered objects are valid Kubernetes objects
# ------------------------------------------------------------------------------------------------

def _strict_model_roundtrip(model, obj, where):
    """Validate `obj` with a pydantic model and fail on any field the model does not know."""
    parsed = model.model_validate(obj)
    dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")

    def diff(a, b, path):
        if isinstance(a, dict):
            check(isinstance(b, dict), f"{where}: {path} is not an object in {model.__name__}")
            for k, v in a.items():
                check(k in b, f"{where}: unknown field {path}.{k} for {model.__name__}")
                diff(v, b[k], f"{path}.{k}")
        elif isinstance(a, list):
            check(isinstance(b, list) and len(a) == len(b), f"{where}: {path} list mismatch")
            for i, (x, y) in enumerate(zip(a, b)):
                diff(x, y, f"{path}[{i}]")
    diff(obj, dumped, "")


CRD_MODELS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): promv1.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): promv1.PrometheusRule,
}

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}


def test_every_rendered_object_validates_against_its_kubernetes_type():
    seen_kinds = set()
    for scenario, values in SCENARIOS.items():
        objs = objects(values)
        check(objs, f"{scenario}: nothing rendered")
        for template, obj in objs:
            where = f"{scenario}: {template}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
            seen_kinds.add(obj["kind"])
            key = (obj["apiVersion"], obj["kind"])
            if key in CRD_MODELS:
                _strict_model_roundtrip(CRD_MODELS[key], obj, where)
            else:
                for version in KUBE_VERSIONS:
                    try:
                        kubernetes_validate.validate(obj, version, strict=True)
                    except kubernetes_validate.ValidationError as e:
                        raise Failure(f"{where}: invalid for Kubernetes {version}: {e.message} at {list(e.path)}")
                    except kubernetes_validate.SchemaNotFoundError as e:
                        raise Failure(f"{where}: {e.message}")
            meta = obj["metadata"]
            check(len(meta["name"]) <= 63 or obj["kind"] in CLUSTER_SCOPED, f"{where}: name longer than 63")
            if obj["kind"] not in CLUSTER_SCOPED:
                expected = values.get("dashboard", {}).get("namespace") if obj["kind"] == "ConfigMap" else None
                check(meta.get("namespace") == (expected or NAMESPACE), f"{where}: namespace {meta.get('namespace')}")
            labels = meta.get("labels", {})
            check(labels.get("app.kubernetes.io/instance") == RELEASE, f"{where}: standard labels missing")
    for kind in ("Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service",
                 "ServiceMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget"):
        check(kind in seen_kinds, f"no scenario renders a {kind}")


def test_validation_catches_a_broken_object():
    """The validators are not vacuous: a misspelt field is rejected."""
    dep = copy.deepcopy(one(objects({}), "Deployment"))
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    try:
        kubernetes_validate.validate(dep, KUBE_VERSIONS[0], strict=True)
    except kubernetes_validate.ValidationError:
        pass
    else:
        raise Failure("kubernetes-validate accepted an unknown securityContext field")
    sm = copy.deepcopy(one(objects(ALL_ON), "ServiceMonitor"))
    sm["spec"]["endpoints"][0]["scrapeIntervall"] = "30s"
    try:
        _strict_model_roundtrip(promv1.ServiceMonitor, sm, "broken ServiceMonitor")
    except Failure:
        pass
    else:
        raise Failure("ServiceMonitor model accepted an unknown field")


def test_crds_validate_as_customresourcedefinitions():
    for crd in chart().crds:
        obj = yaml.safe_load(crd["data"])
        check(obj["kind"] == "CustomResourceDefinition", f"{crd['filename']}: not a CRD")
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


# ------------------------------------------------------------------------------------------------
# Deployment
# ------------------------------------------------------------------------------------------------

def test_deployment_is_hardened():
    for scenario, values in SCENARIOS.items():
        dep = one(objects(values), "Deployment")
        pod = dep["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532, f"{scenario}: pod runs as 65532 non-root")
        check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{scenario}: pod seccomp RuntimeDefault")
        check(pod.get("hostNetwork") in (None, False) and pod.get("hostPID") in (None, False), f"{scenario}: no host namespaces")
        for c in pod["containers"]:
            sc = c["securityContext"]
            check(sc.get("readOnlyRootFilesystem") is True, f"{scenario}: readOnlyRootFilesystem")
            check(sc.get("allowPrivilegeEscalation") is False, f"{scenario}: allowPrivilegeEscalation false")
            check(sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc["capabilities"].get("add"), f"{scenario}: drop ALL")
            check(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 65532, f"{scenario}: container non-root 65532")
            check(sc.get("privileged") is False, f"{scenario}: not privileged")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                check({"cpu", "memory"} <= set(res.get(kind, {})), f"{scenario}: resources.{kind} cpu+memory")
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            check("metrics" in ports, f"{scenario}: metrics port")
            live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
            check(live["path"] == "/healthz" and live["port"] in ("metrics", ports["metrics"]), f"{scenario}: liveness /healthz")
            check(ready["path"] == "/readyz" and ready["port"] in ("metrics", ports["metrics"]), f"{scenario}: readiness /readyz")
            bind = [a for a in c["args"] if a.startswith("--metrics-bind-address=")]
            check(bind == [f"--metrics-bind-address=0.0.0.0:{ports['metrics']}"], f"{scenario}: metrics bind matches port: {bind}")
            env = {e["name"]: e for e in c["env"]}
            check(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", f"{scenario}: POD_NAME downward API")
            check(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace", f"{scenario}: POD_NAMESPACE downward API")
            check(c["args"][0] == "run", f"{scenario}: container runs `run`")


def test_leader_election_forced_with_replicas_and_pdb():
    cases = [
        ({"replicaCount": 1, "leaderElection": {"enabled": False}}, False, "Recreate", False),
        ({"replicaCount": 1}, True, "RollingUpdate", False),
        ({"replicaCount": 2, "leaderElection": {"enabled": False}}, True, "RollingUpdate", True),
        ({"replicaCount": 3, "podDisruptionBudget": {"enabled": False}}, True, "RollingUpdate", False),
    ]
    for values, leader, strategy, pdb in cases:
        objs = objects(values)
        dep = one(objs, "Deployment")
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        check(("--leader-elect" in args) == leader, f"{values}: --leader-elect expected {leader}: {args}")
        check(dep["spec"]["strategy"]["type"] == strategy, f"{values}: strategy {dep['spec']['strategy']}")
        check(dep["spec"]["replicas"] == values["replicaCount"], f"{values}: replicas")
        pdbs = find(objs, "PodDisruptionBudget")
        check(bool(pdbs) == pdb, f"{values}: PodDisruptionBudget expected {pdb}")
        if pdbs:
            check(pdbs[0]["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"], "PDB selects the pods")
        if leader:
            lease = [a for a in args if a.startswith("--leader-election-lease-name=")]
            role = next(o for o in find(objs, "Role"))
            named = [r for r in role["rules"] if r.get("resourceNames")]
            check(named and named[0]["resourceNames"] == [lease[0].split("=", 1)[1]], "Role grants exactly the Lease the binary uses")


def test_args_follow_values():
    args = deployment_args(ALL_ON)
    expected = [
        "run", "--metrics-bind-address=0.0.0.0:8080", "--leader-elect", "--leader-election-lease-name=tenant-identity-operator",
        f"--azure-tenant-id={TENANT_ID}", "--oidc-issuer-url=https://eastus.oic.prod-aks.azure.com/72f988bf/1d3f/",
        "--require-namespace-grant", "--arm-endpoint=https://management.usgovcloudapi.net",
        "--authority-host=https://login.microsoftonline.us/", "--arm-api-version=2024-11-30", "--log-format=text",
        "--verify-interval=30m", "--verify-grace=2m", "--verify-concurrency=8",
        "--azure-devops-endpoint=https://devops-proxy.example.com",
    ]
    check(args == expected, f"all-features args:\n{args}\n!=\n{expected}")
    defaults = deployment_args({})
    check("--require-namespace-grant" not in defaults and not any(a.startswith("--oidc-issuer-url") for a in defaults),
          f"defaults pass no optional flags: {defaults}")
    check("--log-format=json" in defaults, "default log format json")
    verify = [a for a in defaults if a.split("=", 1)[0].startswith(("--verify", "--azure-devops-endpoint"))]
    check(verify == ["--verify-interval=1h", "--verify-grace=3m", "--verify-concurrency=4"],
          f"verification on by default, no DevOps endpoint: {verify}")
    off = deployment_args({"verification": {"enabled": False, "azureDevOpsEndpoint": "https://devops-proxy.example.com"}})
    verify = [a for a in off if a.split("=", 1)[0].startswith(("--verify", "--azure-devops-endpoint"))]
    check(verify == ["--verify=false"], f"verification.enabled=false passes --verify=false only: {verify}")


def test_verification_defaults_are_the_binarys():
    """The chart's verification defaults are the binary's, so leaving a value out changes nothing."""
    text = run([tio_bin(), "run", "--help"]).stdout
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["verification"]

    def binary_default(flag):
        m = re.search(rf"^\s*{re.escape(flag)}(?=[\s\[=]).*?\n(.*?)(?=^\s*-)", text, re.M | re.S)
        check(m, f"`run --help` has no {flag}")
        d = re.search(r"\[default: ([^\]]+)\]", m.group(1))
        check(d, f"`run --help` gives {flag} no default")
        return d.group(1)

    for flag, key in (("--verify", "enabled"), ("--verify-interval", "interval"), ("--verify-grace", "grace"),
                      ("--verify-concurrency", "concurrency")):
        chart_value = str(defaults[key]).lower()
        check(binary_default(flag) == chart_value, f"verification.{key}={chart_value} but {flag} defaults to "
                                                   f"{binary_default(flag)}")
    check(defaults["azureDevOpsEndpoint"] == "", "verification.azureDevOpsEndpoint empty: spec.git.url as written")


def test_workload_identity_wiring():
    objs = objects({})
    sa, dep = one(objs, "ServiceAccount"), one(objs, "Deployment")
    check("azure.workload.identity/client-id" not in (sa["metadata"].get("annotations") or {}), "no WI annotation by default")
    check("azure.workload.identity/use" not in dep["spec"]["template"]["metadata"]["labels"], "no WI label by default")
    objs = objects(ALL_ON)
    sa, dep = one(objs, "ServiceAccount"), one(objs, "Deployment")
    ann = sa["metadata"]["annotations"]
    check(ann.get("azure.workload.identity/client-id") == CLIENT_ID, "SA client-id annotation")
    check(ann.get("azure.workload.identity/tenant-id") == TENANT_ID, "SA tenant-id annotation")
    check(dep["spec"]["template"]["metadata"]["labels"].get("azure.workload.identity/use") == "true", "pod WI label (string \"true\")")
    check(dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"], "pod uses the annotated SA")
    # Existing ServiceAccount: none rendered, bindings point at it.
    objs = objects(SCENARIOS["existing-serviceaccount"])
    check(not find(objs, "ServiceAccount"), "no SA rendered when serviceAccount.create=false")
    check(one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "my-sa", "uses existing SA")
    for b in find(objs, "ClusterRoleBinding") + find(objs, "RoleBinding"):
        check(b["subjects"] == [{"kind": "ServiceAccount", "name": "my-sa", "namespace": NAMESPACE}], f"binding subjects {b['subjects']}")


# ------------------------------------------------------------------------------------------------
# RBAC
# ------------------------------------------------------------------------------------------------

def required_access(require_namespace_grant=False, verify=True):
    """(apiGroup, resource, verbs) the operator needs, as the binary derives them from its child table."""
    cmd = [tio_bin(), "rbac", f"--verify={str(verify).lower()}"] + (["--require-namespace-grant"] if require_namespace_grant else [])
    out = run(cmd)
    check(out.returncode == 0, f"{' '.join(cmd)} failed: {out.stderr}")
    rules = yaml.safe_load(out.stdout)
    return [(g, res, set(r["verbs"])) for r in rules for g in r["apiGroups"] for res in r["resources"]]


# serviceaccounts/token is not here: verification needs create on it (test_rbac_follows_verification).
FORBIDDEN_RESOURCES = {"secrets", "pods", "pods/exec", "clusterroles", "clusterrolebindings",
                       "roles", "rolebindings", "nodes", "*"}
FORBIDDEN_VERBS = {"*", "escalate", "bind", "impersonate", "deletecollection"}


def _granted(rules):
    out = {}
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                out.setdefault((g, res), set()).update(r["verbs"])
    return out


def test_rbac_least_privilege():
    objs = objects({})
    cr = one(objs, "ClusterRole")
    granted = _granted(cr["rules"])
    for group, resource, verbs in required_access():
        have = granted.get((group, resource), set())
        check(verbs <= have, f"ClusterRole lacks {sorted(verbs - have)} on {group or 'core'}/{resource}")
    for r in cr["rules"] + one(objs, "Role")["rules"]:
        check(not set(r.get("resources", [])) & FORBIDDEN_RESOURCES, f"forbidden resource in rule {r}")
        check(not set(r["verbs"]) & FORBIDDEN_VERBS, f"forbidden verb in rule {r}")
        check("*" not in r.get("apiGroups", []), f"wildcard apiGroup in {r}")
        check("update" not in r["verbs"] or r.get("resourceNames"), f"unscoped update (writes are SSA patches): {r}")
    nonres = [r for r in cr["rules"] if "nonResourceURLs" in r]
    check(nonres and set(nonres[0]["nonResourceURLs"]) == {"/.well-known/openid-configuration"}
          and nonres[0]["verbs"] == ["get"], f"issuer discovery rule: {nonres}")
    role = one(objs, "Role")
    check({(g, res) for g, res in _granted(role["rules"])} == {("coordination.k8s.io", "leases")}, "Role is about Leases only")
    check(role["metadata"]["namespace"] == NAMESPACE, "Lease Role in the release namespace")
    # Toggles remove optional rules.
    off = _granted(one(objects({"rbac": {"flux": False, "azureServiceOperator": False}}), "ClusterRole")["rules"])
    check(not any(g in ("source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io", "managedidentity.azure.com") for g, _ in off),
          "rbac.flux/azureServiceOperator=false drop those rules")
    check(not find(objects({"rbac": {"create": False}}), "ClusterRole"), "rbac.create=false renders no RBAC")
    # Namespaces are read only for --require-namespace-grant; ASO identities are only read (binding).
    check(("", "namespaces") not in granted, "no namespace access without security.requireNamespaceGrant")
    check(granted.get(("managedidentity.azure.com", "userassignedidentities")) == {"list", "watch"},
          "UserAssignedIdentity access is read only: list, watch (identity binding, cached)")
    granted_grant = _granted(one(objects({"security": {"requireNamespaceGrant": True}}), "ClusterRole")["rules"])
    check({"list", "watch"} == granted_grant.get(("", "namespaces"), set()),
          "security.requireNamespaceGrant grants list/watch on namespaces (cached; no get)")
    for group, resource, verbs in required_access(require_namespace_grant=True):
        have = granted_grant.get((group, resource), set())
        check(verbs <= have, f"with requireNamespaceGrant the ClusterRole lacks {sorted(verbs - have)} on {group or 'core'}/{resource}")


def test_rbac_follows_verification():
    """verification.enabled=true/false grants what `rbac --verify=true/false` prints: create on
    serviceaccounts/token (and nothing more on it) only while verification is on."""
    token = ("", "serviceaccounts/token")
    for enabled in (True, False):
        for grant in (False, True):
            values = {"verification": {"enabled": enabled}, "security": {"requireNamespaceGrant": grant}}
            label = f"verification.enabled={enabled}, requireNamespaceGrant={grant}"
            granted = _granted(one(objects(values), "ClusterRole")["rules"])
            required = required_access(require_namespace_grant=grant, verify=enabled)
            needed = {(g, res) for g, res, _ in required}
            for group, resource, verbs in required:
                have = granted.get((group, resource), set())
                check(verbs <= have, f"{label}: ClusterRole lacks {sorted(verbs - have)} on {group or 'core'}/{resource}")
            extra = sorted(k for k in granted if k not in needed)
            check(not extra, f"{label}: ClusterRole grants resources `rbac --verify={str(enabled).lower()}` does not "
                             f"print: {extra}")
            check((token in needed) == enabled, f"{label}: `rbac --verify={str(enabled).lower()}` and serviceaccounts/token")
            if enabled:
                check(granted.get(token) == {"create"}, f"{label}: serviceaccounts/token is create only: {granted.get(token)}")
            else:
                check(token not in granted, f"{label}: serviceaccounts/token granted with verification off")
    # The binary's default is the chart's: verification on.
    check(sorted(map(str, required_access(verify=True))) == sorted(map(str, _rbac_default_output())),
          "`rbac` without --verify prints what `rbac --verify=true` does")
    # Never anything else on tokens, in any scenario.
    for scenario, values in SCENARIOS.items():
        for rule in (r for cr in find(objects(values), "ClusterRole") for r in cr["rules"]):
            resources = set(rule.get("resources", []))
            if "serviceaccounts/token" in resources:
                check(resources == {"serviceaccounts/token"} and rule["verbs"] == ["create"] and rule["apiGroups"] == [""],
                      f"{scenario}: token rule {rule}")


def _rbac_default_output():
    out = run([tio_bin(), "rbac"])
    check(out.returncode == 0, f"`rbac` failed: {out.stderr}")
    return [(g, res, set(r["verbs"])) for r in yaml.safe_load(out.stdout) for g in r["apiGroups"] for res in r["resources"]]


def test_every_rbac_rule_has_a_comment():
    for template in ("clusterrole.yaml", "role.yaml"):
        text = render({})[f"tenant-identity-operator/templates/{template}"]
        lines = text.splitlines()
        in_rules, count = False, 0
        for n, line in enumerate(lines):
            if re.match(r"^rules:\s*$", line):
                in_rules = True
                continue
            if in_rules and re.match(r"^\S", line):
                in_rules = False
            if in_rules and re.match(r"^\s*- (apiGroups|nonResourceURLs|resources|verbs):", line):
                count += 1
                prev = next(lines[k] for k in range(n - 1, -1, -1) if lines[k].strip())
                check(prev.strip().startswith("#") and len(prev.strip().lstrip("#").strip()) >= 10,
                      f"{template}: rule without a comment saying why: {line.strip()}")
        check(count >= 2, f"{template}: found only {count} rules")


# What the e2e suite's emulators recorded (one audit.k8s.io/v1 Event a line, kube-emulator's audit
# module); `make unit` and `make e2e` empty the directory before the suite runs.
AUDIT_DIR = Path(os.environ.get("KUBE_EMULATOR_AUDIT_DIR") or ROOT / "target" / "e2e-audit")
OPERATOR_USER_AGENT = "tenant-identity-operator/"
# Values that turn every optional rule on.
EVERY_RULE = {"security": {"requireNamespaceGrant": True}, "leaderElection": {"enabled": True},
              "verification": {"enabled": True},
              "rbac": {"create": True, "flux": True, "azureServiceOperator": True}}
# Non-resource URLs every authenticated user may get through Kubernetes' default ClusterRoles
# system:discovery and system:public-info-viewer: the operator needs no rule of its own for them.
DEFAULT_NONRESOURCE_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/version/",
                            "/healthz", "/livez", "/readyz"]
# Granted, yet no e2e scenario makes the operator use it. Each entry says why the rule stays; an
# entry that is used, or no longer granted, fails the test (the list only shrinks).
RBAC_UNUSED_ALLOWED = {
    ("identity.tenancy.dev", "tenantidentities", "get"):
        "status_writer::report_unreadable reads a TenantIdentity the operator's types cannot decode; the CRD "
        "schema the suite installs keeps every object it can create decodable",
}


def _rbac_audit_entries():
    """(files, entries) recorded by the e2e suite whose user agent is the operator's."""
    files = sorted(AUDIT_DIR.glob("*.jsonl")) if AUDIT_DIR.is_dir() else []
    entries = []
    for f in files:
        lines = f.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                # The last line of a test process killed mid-write; anything else is a bug.
                check(n == len(lines), f"{f}:{n}: not a JSON line")
                continue
            if e.get("userAgent", "").startswith(OPERATOR_USER_AGENT):
                entries.append(e)
    return files, entries


def _nonresource_match(patterns, path):
    return any(p == path or (p.endswith("*") and path.startswith(p[:-1])) for p in patterns)


def _rule_allows(rule, group, resource, verb, name):
    verbs = rule.get("verbs", [])
    if verb not in verbs and "*" not in verbs:
        return False
    if group not in rule.get("apiGroups", []) or resource not in rule.get("resources", []):
        return False
    names = rule.get("resourceNames")
    return not names or name in names


def rbac_usage():
    """The operator's recorded requests against the chart's rules with every optional rule on:
    (entries, used {(group, resource, verb): count}, used non-resource {(path, verb): count},
    ungranted [request], granted {(group, resource, verb)}, granted non-resource {(url, verb)})."""
    _, entries = _rbac_audit_entries()
    objs = objects(deep_merge({}, EVERY_RULE))
    # The Role's namespace is the release's; the suite runs each operator's Lease in its test
    # namespace, so a Role rule is matched on everything but the namespace.
    rules = one(objs, "ClusterRole")["rules"] + one(objs, "Role")["rules"]
    used, used_nonres, ungranted = {}, {}, []
    for e in entries:
        verb, ref = e["verb"], e.get("objectRef")
        if ref is None:
            path = e["requestURI"].split("?", 1)[0]
            key = (path, verb)
            used_nonres[key] = used_nonres.get(key, 0) + 1
            grants = [p for r in rules if verb in r.get("verbs", []) for p in r.get("nonResourceURLs", [])]
            if not (verb == "get" and _nonresource_match(DEFAULT_NONRESOURCE_URLS, path)) and not _nonresource_match(grants, path):
                ungranted.append(f"{verb} {path}")
            continue
        group = ref.get("apiGroup", "")
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        key = (group, resource, verb)
        used[key] = used.get(key, 0) + 1
        if not any(_rule_allows(r, group, resource, verb, ref.get("name", "")) for r in rules):
            where = f" {ref.get('namespace', '')}/{ref.get('name', '')}" if ref.get("name") else ""
            ungranted.append(f"{verb} {group or 'core'}/{resource}{where} ({e['requestURI']})")
    granted = {(g, res, v) for r in rules for g in r.get("apiGroups", []) for res in r.get("resources", [])
               for v in r["verbs"]}
    granted_nonres = {(u, v) for r in rules for u in r.get("nonResourceURLs", []) for v in r["verbs"]}
    return entries, used, used_nonres, ungranted, granted, granted_nonres


def test_every_rbac_rule_is_exercised():
    """The e2e suite runs the operator as a cluster-admin of the emulator, so a rule the chart lacks
    would never show there: its recorded requests (user agent tenant-identity-operator/...) must each
    be granted by the chart, and each granted verb must have been used (or be allow-listed with why)."""
    files, _ = _rbac_audit_entries()
    entries, used, used_nonres, ungranted, granted, granted_nonres = rbac_usage()
    if not entries:
        why = (f"no request of the operator recorded in {AUDIT_DIR} ({len(files)} files): run the e2e suite against "
               f"the emulator first (make unit, or make e2e; E2E_KUBECONFIG's real clusters are not recorded)")
        ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
        if ci or os.environ.get("REQUIRE_RBAC_AUDIT") == "1":
            raise Failure(why)
        raise Skipped(why + "; set REQUIRE_RBAC_AUDIT=1 to fail instead")
    check(not ungranted, f"the operator made {len(ungranted)} requests the chart does not grant (a real cluster would "
                         f"answer 403): " + "; ".join(sorted(set(ungranted))[:20]))
    for key, reason in RBAC_UNUSED_ALLOWED.items():
        check(key in granted, f"allow-listed {key} is not granted any more: drop it from RBAC_UNUSED_ALLOWED")
        check(key not in used, f"allow-listed {key} is used ({used.get(key)} requests): drop it from RBAC_UNUSED_ALLOWED")
        check(len(reason) >= 20, f"allow-listed {key} needs a reason")
    unused = sorted(k for k in granted if k not in used and k not in RBAC_UNUSED_ALLOWED)
    check(not unused, "granted but never used by the operator in the e2e suite (remove the verb, or allow-list it with "
                      "a reason in RBAC_UNUSED_ALLOWED): " + ", ".join(f"{v} {g or 'core'}/{r}" for g, r, v in unused))
    unused_nonres = sorted(k for k in granted_nonres if k not in used_nonres)
    check(not unused_nonres, f"granted non-resource URLs never requested by the operator: {unused_nonres}")


# ------------------------------------------------------------------------------------------------
# Service, monitoring, dashboard, network policy
# ------------------------------------------------------------------------------------------------

def test_service_and_servicemonitor_select_the_operator():
    objs = objects(ALL_ON)
    dep, svc, sm = one(objs, "Deployment"), one(objs, "Service"), one(objs, "ServiceMonitor")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    check(all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selects the operator pods")
    check(svc["spec"]["ports"][0]["targetPort"] == "metrics", "Service targets the metrics port")
    sel = sm["spec"]["selector"]["matchLabels"]
    check(all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), "ServiceMonitor selects the Service")
    check(sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE], "ServiceMonitor namespace")
    check(sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"], "ServiceMonitor endpoint port name")
    check(sm["metadata"]["labels"].get("release") == "kube-prometheus-stack", "ServiceMonitor extra labels")
    # The alerts select job=<Service name>: the job label a ServiceMonitor gives its targets.
    rules = one(objs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    down = next(r for r in rules if r["alert"] == "TenantIdentityOperatorDown")
    check(f'job="{svc["metadata"]["name"]}"' in down["expr"], f"operator-down alert selects the Service's job: {down['expr']}")
    check(not find(objects({}), "ServiceMonitor") and not find(objects({}), "PrometheusRule"), "monitoring off by default")


def test_prometheus_rules_pass_promtool():
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    check(promtool, "promtool not found: apt-get install -y prometheus (or set PROMTOOL)")
    OUT.mkdir(parents=True, exist_ok=True)
    pr = one(objects(ALL_ON), "PrometheusRule")
    rules_file = OUT / "tenant-identity-operator.rules.yaml"
    rules_file.write_text(yaml.safe_dump(pr["spec"], sort_keys=False))
    r = run([promtool, "check", "rules", str(rules_file)])
    check(r.returncode == 0, f"promtool check rules failed:\n{r.stdout}\n{r.stderr}")
    alerts = {rule["alert"] for g in pr["spec"]["groups"] for rule in g["rules"]}
    check(alerts >= {"TenantIdentityOperatorDown", "TenantIdentityReconcileErrors", "TenantIdentityNotReady",
                     "TenantIdentityAzureThrottled", "TenantIdentityWatchFailing", "TenantIdentityVerificationFailing"},
          f"alerts: {alerts}")
    for g in pr["spec"]["groups"]:
        for rule in g["rules"]:
            ann = rule.get("annotations", {})
            check({"summary", "description", "runbook_url"} <= ann.keys(), f"{rule['alert']}: annotations {sorted(ann)}")
            check(rule["labels"].get("severity") in ("critical", "warning", "info"), f"{rule['alert']}: severity")
            check(rule["labels"].get("team") == "platform", f"{rule['alert']}: alertLabels applied")
    not_ready = next(r for g in pr["spec"]["groups"] for r in g["rules"] if r["alert"] == "TenantIdentityNotReady")
    check(not_ready["for"] == "15m", "TenantIdentityNotReady waits 15m")
    # Behaviour: promtool unit tests (hack/chart/alerts_test.yaml) fire and stay quiet as intended.
    shutil.copy(HERE / "alerts_test.yaml", OUT / "alerts_test.yaml")
    r = run([promtool, "test", "rules", str(OUT / "alerts_test.yaml")])
    check(r.returncode == 0, f"promtool test rules failed:\n{r.stdout}\n{r.stderr}")


REPO_URL = "https://github.com/tenancy-dev/tenant-identity-operator/blob/main/"
# Verification results that are failures: each has a section in the alert's runbook (the
# runbook_url ends in #<result lowercased>).
VERIFICATION_FAILURES = ["FederationMismatch", "IssuerUnreachable", "ClientNotFound", "ExchangeFailed",
                         "GitAccessDenied", "RepositoryNotFound", "GitCheckFailed"]


def _markdown_anchors(path):
    """GitHub's heading anchors of a Markdown file (lowercased, punctuation dropped, spaces to -)."""
    anchors = set()
    for line in path.read_text().splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            anchors.add(re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-"))
    return anchors


def test_runbook_urls_point_into_the_repository():
    """With the default values, every alert's runbook_url is a file of this repository and a heading
    in it; the verification alert's anchor is the failing reason, and every failing reason has one."""
    pr = one(objects({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    for rule in (r for g in pr["spec"]["groups"] for r in g["rules"]):
        url = rule["annotations"]["runbook_url"]
        check(url.startswith(REPO_URL), f"{rule['alert']}: runbook_url {url} is not in the repository")
        path, _, anchor = url[len(REPO_URL):].partition("#")
        check((ROOT / path).is_file(), f"{rule['alert']}: runbook_url names {path}, which does not exist")
        anchors = _markdown_anchors(ROOT / path)
        if "{{" in anchor:
            check(anchor == "{{ $labels.result | toLower }}", f"{rule['alert']}: templated anchor {anchor}")
            for reason in VERIFICATION_FAILURES:
                check(reason.lower() in anchors, f"{path} has no section for {reason} ({rule['alert']})")
        else:
            check(anchor in anchors, f"{rule['alert']}: {path} has no heading #{anchor}")
    alert = next(r for g in pr["spec"]["groups"] for r in g["rules"] if r["alert"] == "TenantIdentityVerificationFailing")
    excluded = re.search(r'result!~"([^"]+)"', alert["expr"])
    check(excluded and set(excluded.group(1).split("|")) == {"TokenExchangeSucceeded", "GitAccessGranted", "Verifying"},
          f"TenantIdentityVerificationFailing counts every result but success and Verifying: {alert['expr']}")
    check(not set(VERIFICATION_FAILURES) & set(excluded.group(1).split("|")), "a failure is excluded")


def test_promtool_rejects_a_broken_rule():
    """The promtool step is not vacuous."""
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    check(promtool, "promtool not found")
    OUT.mkdir(parents=True, exist_ok=True)
    bad = OUT / "broken.rules.yaml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum(rate(x[5m])"}]}]}))
    check(run([promtool, "check", "rules", str(bad)]).returncode != 0, "promtool accepted an unbalanced expression")


def _dashboard_exprs(dash):
    exprs = []

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "expr" and isinstance(x, str):
                    exprs.append(x)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(dash.get("panels", []))
    return exprs


def test_dashboard_configmap_and_queries():
    files = sorted((CHART / "dashboards").glob("*.json"))
    check(files, "no dashboards")
    objs = objects(ALL_ON)
    cms = [o for o in find(objs, "ConfigMap") if o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    check(len(cms) == len(files), f"{len(files)} dashboards but {len(cms)} ConfigMaps labelled grafana_dashboard=1")
    check(cms[0]["metadata"].get("annotations", {}).get("grafana_folder") == "Platform", "dashboard annotations")
    check(not find(objects({}), "ConfigMap"), "dashboard off by default")
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    for f in files:
        dash = json.loads(f.read_text())
        data = next(cm["data"][f.name] for cm in cms if f.name in cm["data"])
        check(json.loads(data) == dash, f"{f.name}: ConfigMap content differs from the file")
        check(dash.get("uid") and dash.get("title"), f"{f.name}: uid/title")
        panels = [p for p in dash["panels"] if p["type"] != "row"]
        titles = " ".join(p["title"].lower() for p in panels)
        for needed in ("reconcile rate", "errors by reason", "duration", "by condition", "azure requests by code", "latency",
                       "verification results", "verification duration"):
            check(needed in titles, f"{f.name}: no panel about {needed!r}")
        cells = set()
        for p in dash["panels"]:
            g = p["gridPos"]
            check(g["x"] + g["w"] <= 24, f"{f.name}: panel {p['title']} wider than the grid")
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    check((x, y) not in cells, f"{f.name}: panel {p['title']} overlaps another")
                    cells.add((x, y))
        for p in panels:
            check(p.get("datasource", {}).get("uid") == "${datasource}", f"{f.name}: panel {p['title']} not on $datasource")
            check(p.get("targets"), f"{f.name}: panel {p['title']} has no query")
        exprs = _dashboard_exprs(dash)
        check(any("histogram_quantile" in e for e in exprs), f"{f.name}: no duration quantiles")
        # Every query is valid PromQL: promtool parses them as recording rules (Grafana macros substituted).
        if promtool:
            rules = []
            for i, e in enumerate(exprs):
                e = e.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
                e = re.sub(r"\$\{?(\w+)\}?", ".*", e)
                rules.append({"record": f"dashboard:query_{i}", "expr": e})
            path = OUT / f"{f.stem}.queries.rules.yaml"
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
            r = run([promtool, "check", "rules", str(path)])
            check(r.returncode == 0, f"{f.name}: a panel query is not valid PromQL:\n{r.stdout}\n{r.stderr}")


def test_network_policy():
    objs = objects(ALL_ON)
    np_ = one(objs, "NetworkPolicy")
    dep = one(objs, "Deployment")
    check(np_["spec"]["podSelector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
          "NetworkPolicy selects the operator pods")
    check(set(np_["spec"]["policyTypes"]) == {"Ingress", "Egress"}, "both directions restricted")
    ingress = np_["spec"]["ingress"]
    check(len(ingress) == 1 and [p["port"] for p in ingress[0]["ports"]] == ["metrics"], f"ingress only to metrics: {ingress}")
    check(ingress[0]["from"] == ALL_ON["networkPolicy"]["metricsFrom"], "metricsFrom applied")
    egress_ports = {(p["port"], p["protocol"]) for rule in np_["spec"]["egress"] for p in rule["ports"]}
    check(egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")}, f"egress ports {egress_ports}")
    https = next(r for r in np_["spec"]["egress"] if any(p["port"] == 443 for p in r["ports"]))
    check([t["ipBlock"]["cidr"] for t in https["to"]] == ["10.0.0.0/8", "0.0.0.0/0"], "egressCIDRs applied")
    check(not find(objects({}), "NetworkPolicy"), "NetworkPolicy off by default")


def test_notes_render():
    for values in ({}, ALL_ON):
        notes = render(values)["tenant-identity-operator/templates/NOTES.txt"]
        check("kubectl get ti -A" in notes and NAMESPACE in notes, "NOTES.txt explains how to check the install")


# ------------------------------------------------------------------------------------------------
# the binary: flags and CRD
# ------------------------------------------------------------------------------------------------

def _help_flags(text):
    return set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", text)), set(re.findall(r"\[env: ([A-Z0-9_]+)", text))


def test_deployment_flags_are_accepted_by_the_binary():
    binary = tio_bin()
    r = run([binary, "run", "--help"])
    check(r.returncode == 0, f"`run --help` failed: {r.stderr}")
    flags, envs = _help_flags(r.stdout)
    for scenario, values in SCENARIOS.items():
        args = deployment_args(values)
        for a in args[1:]:
            flag = a.split("=", 1)[0]
            check(flag in flags, f"{scenario}: chart passes {flag}, which `run --help` does not list")
        # Parse the chart's exact argument list with the binary's own parser: clap stops at --help
        # only after every preceding flag and value parsed (unknown flag or bad value = exit 2).
        r = run([binary, *args, "--help"], env={"PATH": os.environ.get("PATH", "")})
        check(r.returncode == 0, f"{scenario}: the binary rejects the chart's args {args}:\n{r.stderr}")
    # The env the chart sets for leader election is what the binary reads.
    for env in ("POD_NAME", "POD_NAMESPACE"):
        check(env in envs, f"`run --help` does not read {env} (the chart sets it from the downward API)")
    # A wrong flag is rejected (the check above is not vacuous).
    r = run([binary, "run", "--metrics-bind-adress=0.0.0.0:8080", "--help"])
    check(r.returncode != 0, "binary accepted a misspelt flag before --help")


def test_readme_flags_match_binary():
    """The README's flag table lists exactly what the binary accepts, and every flag the chart passes.

    Checked in hack/chart/README-snippet.md and, once pasted, in README.md."""
    binary = tio_bin()
    flags, _ = _help_flags(run([binary, "run", "--help"]).stdout)
    flags -= {"--help", "--version"}
    docs = [HERE / "README-snippet.md"]
    readme = ROOT / "README.md"
    if readme.exists() and re.search(r"^\|\s*`--", readme.read_text(), re.M):
        docs.append(readme)
    for doc in docs:
        table = set(re.findall(r"^\|\s*`(--[a-z0-9-]+)", doc.read_text(), re.M))
        check(table, f"{doc.name} has no flag table")
        check(table == flags, f"{doc.name} flags differ from `run --help`: only in the doc {sorted(table - flags)}, "
                              f"only in the binary {sorted(flags - table)}")
        for a in deployment_args(ALL_ON)[1:]:
            check(a.split("=", 1)[0] in table, f"chart flag {a} not documented in {doc.name}")


def test_crd_has_not_drifted():
    binary = tio_bin()
    r = run([binary, "crd"])
    check(r.returncode == 0, f"`tenant-identity-operator crd` failed: {r.stderr}")
    generated = [d for d in yaml.safe_load_all(r.stdout) if d]
    shipped = [yaml.safe_load(c["data"]) for c in chart().crds]
    files = sorted((CHART / "crds").glob("*.yaml"))
    check(len(files) == 1, f"expected one file in crds/, found {[f.name for f in files]}")
    check(files[0].read_text() == r.stdout,
          f"helm/tenant-identity-operator/crds/{files[0].name} differs from `tenant-identity-operator crd`; "
          f"regenerate: cargo run -p tenant-identity-operator -- crd > helm/tenant-identity-operator/crds/{files[0].name}")
    check(generated == shipped, "parsed CRDs differ")


# ------------------------------------------------------------------------------------------------

def main():
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    only = sys.argv[1:]
    if only:
        tests = [(n, f) for n, f in tests if any(o in n for o in only)]
    passed = failed = skipped = 0
    for name, fn in tests:
        try:
            fn()
        except Skipped as e:
            skipped += 1
            print(f"SKIP {name}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            detail = str(e) if isinstance(e, (Failure, helm.HelmError)) else traceback.format_exc()
            print(f"FAIL {name}: {detail}", flush=True)
        else:
            passed += 1
            print(f"ok   {name}", flush=True)
    print(f"chart: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
