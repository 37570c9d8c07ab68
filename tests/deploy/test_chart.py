#!/usr/bin/env python3
"""The Helm chart and the Kubernetes examples, checked with the real Helm engine.

Run: SCOPEGATE_BIN=target/debug/scopegate python3 tests/deploy/test_chart.py
(scripts/test.sh builds the binary and installs the pinned packages first.)

For every value file under deploy/helm/scopegate/ci/: `helm lint --strict`, the values
against values.schema.json, `helm template`, every rendered object against the Kubernetes
API schemas of the chart's oldest supported version (1.29) and of the newest the validator
ships, every config and policy in a rendered ConfigMap through `scopegate check`, and the
shape each mode promises (security context, probes, native sidecar, ports, checksums).
Helm is helm-python-sdk (Helm v4's Go SDK as a native library; no helm binary exists here).
"""
import copy
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "scopegate"
CI = CHART / "ci"
EXAMPLES = ROOT / "deploy" / "kubernetes"
FIXTURES = ROOT / "tests" / "fixtures"
BIN = os.environ.get("SCOPEGATE_BIN", str(ROOT / "target" / "debug" / "scopegate"))
KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
RELEASE, NAMESPACE = "sg", "edge"
VALUE_FILES = {
    "gateway-minimal": "gateway-minimal-values.yaml",
    "gateway-full": "gateway-full-values.yaml",
    "authz": "authz-values.yaml",
    "sidecar": "sidecar-values.yaml",
    "tls": "tls-values.yaml",
}
# Volume types the Pod Security "restricted" profile allows.
RESTRICTED_VOLUMES = {"configMap", "secret", "emptyDir", "projected", "downwardAPI", "csi",
                      "persistentVolumeClaim", "ephemeral"}


def values(name):
    return yaml.safe_load((CI / VALUE_FILES[name]).read_text()) or {}


def render(vals, name=RELEASE, namespace=NAMESPACE):
    with helm.Chart.load(CHART) as chart:
        return chart.render(vals, name=name, namespace=namespace, is_install=True)


def objects(rendered):
    """Every object of a render, NOTES.txt left out."""
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        out += [d for d in yaml.safe_load_all(text) if d]
    return out


def one(objs, kind):
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects in {[o['kind'] for o in objs]}"
    return found[0]


def pod_spec(objs):
    return one(objs, "Deployment")["spec"]["template"]["spec"]


def scopegate_container(spec):
    found = [c for c in spec.get("containers", []) + spec.get("initContainers", [])
             if c["name"] == "scopegate"]
    assert len(found) == 1, found
    return found[0]


def config_of(objs):
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and "scopegate.yaml" in o["data"])
    return cm, yaml.safe_load(cm["data"]["scopegate.yaml"])


def seconds(d):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", d)
    return int(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m[2]]


def scopegate_check(objs, env_names):
    """`scopegate check` on each rendered config (with the policy it names) and each policy.

    Paths the chart mounts are pointed at files in a temporary directory: the rendered
    policy, and test certificates and keys for the TLS and key-file Secret mounts.
    Returns (args, exit code, output) for each run."""
    env = dict(os.environ, **{n: f"test-value-of-{n}" for n in env_names})
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mounts = {
            "/etc/scopegate/policy/": f"{tmp}/policy/",
            "/etc/scopegate/tls/tls.crt": str(FIXTURES / "tls" / "server.crt.pem"),
            "/etc/scopegate/tls/tls.key": str(FIXTURES / "tls" / "server.key.pem"),
            "/etc/scopegate/tls/ca.crt": str(FIXTURES / "tls" / "ca.crt.pem"),
            "/etc/scopegate/keys/jwe.key.pem": str(FIXTURES / "keys" / "proxy-jwe-rsa.key.pem"),
        }

        def localize(text):
            for mounted, local in mounts.items():
                text = text.replace(mounted, local)
            return text

        (tmp / "policy").mkdir()
        configs = []
        for cm in (o for o in objs if o["kind"] == "ConfigMap"):
            for key, text in cm["data"].items():
                if key == "scopegate.yaml":
                    configs.append((cm["metadata"]["name"], localize(text)))
                else:
                    (tmp / "policy" / key).write_text(localize(text))
        assert configs or list((tmp / "policy").iterdir()), "no config or policy rendered"
        for i, (name, text) in enumerate(configs):
            path = tmp / f"config-{i}.yaml"
            path.write_text(text)
            p = subprocess.run([BIN, "check", "--config", str(path)], capture_output=True,
                               text=True, env=env, timeout=30)
            results.append((f"--config ({name})", p.returncode, p.stdout + p.stderr))
        for path in sorted((tmp / "policy").iterdir()):
            p = subprocess.run([BIN, "check", "--policy", str(path)], capture_output=True,
                               text=True, env=env, timeout=30)
            results.append((f"--policy {path.name}", p.returncode, p.stdout + p.stderr))
    return results


def assert_restricted(test, spec, where):
    """The Pod Security Standards "restricted" profile (v1.29+), rule by rule."""
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        test.assertFalse(spec.get(host, False), f"{where}: {host}")
    pod_sc = spec.get("securityContext", {})
    test.assertTrue(pod_sc.get("runAsNonRoot"), f"{where}: pod runAsNonRoot")
    test.assertNotEqual(pod_sc.get("runAsUser"), 0, f"{where}: pod runAsUser 0")
    test.assertEqual(pod_sc.get("seccompProfile", {}).get("type"), "RuntimeDefault", where)
    for v in spec.get("volumes", []):
        kinds = set(v) - {"name"}
        test.assertTrue(kinds <= RESTRICTED_VOLUMES, f"{where}: volume {v}")
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    test.assertTrue(containers)
    for c in containers:
        sc = c.get("securityContext", {})
        name = f"{where}: container {c['name']}"
        test.assertIs(sc.get("allowPrivilegeEscalation"), False, name)
        test.assertFalse(sc.get("privileged", False), name)
        test.assertEqual(sc.get("capabilities", {}).get("drop"), ["ALL"], name)
        test.assertFalse(set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}, name)
        test.assertTrue(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")), name)
        test.assertNotEqual(sc.get("runAsUser", pod_sc.get("runAsUser")), 0, name)
        test.assertIs(sc.get("readOnlyRootFilesystem"), True, name)
        test.assertNotIn("hostPort", str(c.get("ports", [])), name)
        res = c.get("resources", {})
        test.assertTrue(res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory"),
                        f"{name}: requests")
        test.assertTrue(res.get("limits", {}).get("memory"), f"{name}: memory limit")


class Renders(unittest.TestCase):
    """What holds for every value file."""

    rendered = {}

    @classmethod
    def setUpClass(cls):
        cls.rendered = {name: render(values(name)) for name in VALUE_FILES}

    def test_lint_is_clean_in_strict_mode(self):
        for name in VALUE_FILES:
            report = helm.lint(CHART, values(name), strict=True, namespace=NAMESPACE,
                               kube_version="v1.29.0")
            self.assertEqual(report["errors"], [], name)
            serious = [m for m in report["messages"] if m["severity"] >= 2]
            self.assertEqual(serious, [], name)

    def test_values_pass_the_chart_schema(self):
        with helm.Chart.load(CHART) as chart:
            for name in VALUE_FILES:
                chart.validate_schema(values(name))

    def test_every_object_is_valid_kubernetes(self):
        crds = {"ServiceMonitor", "PrometheusRule"}
        for name, rendered in self.rendered.items():
            for obj in objects(rendered):
                if obj["kind"] in crds:
                    continue  # Prometheus Operator CRDs: checked in GatewayFull
                for version in KUBE_VERSIONS:
                    with self.subTest(values=name, kind=obj["kind"], kube=version):
                        kubernetes_validate.validate(obj, version, strict=True)

    def test_every_embedded_config_and_policy_passes_scopegate_check(self):
        for name, rendered in self.rendered.items():
            env = [e["name"] for e in values(name).get("secretEnv", [])]
            for args, code, out in scopegate_check(objects(rendered), env):
                with self.subTest(values=name, check=args):
                    self.assertEqual(code, 0, out)
                    self.assertIn(": ok (", out)

    def test_pods_meet_the_restricted_profile_and_run_as_65532(self):
        for name, rendered in self.rendered.items():
            spec = pod_spec(objects(rendered))
            assert_restricted(self, spec, name)
            self.assertEqual(spec["securityContext"]["runAsUser"], 65532)
            self.assertEqual(spec["securityContext"]["runAsGroup"], 65532)
            self.assertIs(spec["automountServiceAccountToken"], False)

    def test_probes_hit_the_admin_port_the_config_listens_on(self):
        for name, rendered in self.rendered.items():
            objs = objects(rendered)
            c = scopegate_container(pod_spec(objs))
            _, cfg = config_of(objs)
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            self.assertEqual(cfg["admin_listen"], f"0.0.0.0:{ports['admin']}", name)
            self.assertEqual(c["startupProbe"]["httpGet"], {"path": "/readyz", "port": "admin"})
            self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "admin"})
            self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "admin"})
            self.assertEqual(c["args"], ["run", "--config", "/etc/scopegate/config/scopegate.yaml"])
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            self.assertEqual(cfg["policy_file"], "/etc/scopegate/policy/policy.yaml")
            # The policy directory is mounted whole: a subPath mount never sees the ..data swap.
            self.assertNotIn("subPath", mounts["/etc/scopegate/policy"])
            self.assertTrue(all(m["readOnly"] for m in mounts.values()))

    def test_grace_period_outlasts_the_drain(self):
        for name, rendered in self.rendered.items():
            objs = objects(rendered)
            _, cfg = config_of(objs)
            drain = seconds(cfg.get("limits", {}).get("drain_timeout", "30s"))
            self.assertGreater(pod_spec(objs)["terminationGracePeriodSeconds"], drain, name)

    def test_service_reaches_the_pods_ports_and_admin_is_scrapable(self):
        for name, rendered in self.rendered.items():
            objs = objects(rendered)
            svc, dep = one(objs, "Service"), one(objs, "Deployment")
            labels = dep["spec"]["template"]["metadata"]["labels"]
            self.assertLessEqual(svc["spec"]["selector"].items(), labels.items(), name)
            self.assertEqual(dep["spec"]["selector"]["matchLabels"], svc["spec"]["selector"])
            names = {p["name"] for p in scopegate_container(pod_spec(objs))["ports"]}
            for port in svc["spec"]["ports"]:
                self.assertIn(port["targetPort"], names, name)
            ann = dep["spec"]["template"]["metadata"]["annotations"]
            self.assertEqual(ann["prometheus.io/scrape"], "true")
            self.assertEqual(ann["prometheus.io/port"], "9901")

    def test_secrets_come_only_from_secret_references(self):
        for name, rendered in self.rendered.items():
            spec = pod_spec(objects(rendered))
            c = scopegate_container(spec)
            for e in c.get("env", []):
                self.assertIn("secretKeyRef", e.get("valueFrom", {}), f"{name}: {e}")
            for e in values(name).get("secretEnv", []):
                ref = next(x for x in c["env"] if x["name"] == e["name"])["valueFrom"]["secretKeyRef"]
                self.assertEqual((ref["name"], ref["key"]), (e["secretName"], e["key"]))
            self.assertNotIn("Secret", [o["kind"] for o in objects(rendered)], name)


class Modes(unittest.TestCase):
    def test_gateway_runs_scopegate_as_the_pods_only_container(self):
        objs = objects(render(values("gateway-minimal")))
        spec = pod_spec(objs)
        self.assertEqual([c["name"] for c in spec["containers"]], ["scopegate"])
        self.assertNotIn("initContainers", spec)
        _, cfg = config_of(objs)
        self.assertEqual(cfg["listen"], "0.0.0.0:8080")
        self.assertEqual(cfg["upstreams"], {"default": "http://bot-api.bots.svc:8080"})
        svc = one(objs, "Service")
        self.assertEqual(svc["spec"]["ports"][0],
                         {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"})
        self.assertEqual(sorted(o["kind"] for o in objs),
                         ["ConfigMap", "ConfigMap", "Deployment", "Service", "ServiceAccount"])

    def test_sidecar_is_a_native_sidecar_in_front_of_a_localhost_app(self):
        objs = objects(render(values("sidecar")))
        spec = pod_spec(objs)
        [sg] = spec["initContainers"]
        self.assertEqual(sg["name"], "scopegate")
        self.assertEqual(sg["restartPolicy"], "Always")
        [app] = spec["containers"]
        self.assertEqual(app["name"], "api")
        self.assertNotIn("ports", app)  # nothing reaches the app but through the proxy
        self.assertNotIn("restartPolicy", app)
        _, cfg = config_of(objs)
        self.assertEqual(cfg["upstreams"]["default"], "http://127.0.0.1:3000")
        self.assertEqual(cfg["listen"], "0.0.0.0:8080")
        self.assertEqual(one(objs, "Service")["spec"]["ports"][0]["targetPort"], "http")

    def test_a_parent_chart_adds_the_native_sidecar_to_its_own_pod(self):
        """The helper templates, used as the README says, from a chart depending on this one."""
        with tempfile.TemporaryDirectory() as tmp:
            parent = Path(tmp) / "myapp"
            (parent / "templates").mkdir(parents=True)
            shutil.copytree(CHART, parent / "charts" / "scopegate")
            (parent / "Chart.yaml").write_text(
                "apiVersion: v2\nname: myapp\nversion: 1.0.0\n"
                "dependencies: [{ name: scopegate, version: 0.1.0 }]\n")
            v = values("sidecar")
            v["sidecar"]["standalone"] = False
            (parent / "values.yaml").write_text(yaml.safe_dump({"scopegate": v}))
            (parent / "templates" / "deployment.yaml").write_text("""\
apiVersion: apps/v1
kind: Deployment
metadata: { name: myapp }
spec:
  selector: { matchLabels: { app: myapp } }
  template:
    metadata: { labels: { app: myapp } }
    spec:
      terminationGracePeriodSeconds: 40
      securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: RuntimeDefault } }
      initContainers:
        {{- include "scopegate.nativeSidecar" .Subcharts.scopegate | nindent 8 }}
      containers:
        - name: app
          image: myapp:1
          resources: { requests: { cpu: 100m, memory: 64Mi }, limits: { memory: 64Mi } }
          securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
      volumes:
        {{- include "scopegate.volumes" .Subcharts.scopegate | nindent 8 }}
""")
            with helm.Chart.load(parent) as chart:
                objs = objects(chart.render({}, name="myapp", namespace=NAMESPACE, is_install=True))
        # The subchart renders nothing but its ConfigMaps; the pod is the parent's.
        self.assertEqual(sorted(o["kind"] for o in objs), ["ConfigMap", "ConfigMap", "Deployment"])
        spec = pod_spec(objs)
        [sg] = spec["initContainers"]
        self.assertEqual((sg["name"], sg["restartPolicy"]), ("scopegate", "Always"))
        assert_restricted(self, spec, "parent chart")
        maps = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
        self.assertEqual({v["configMap"]["name"] for v in spec["volumes"]}, maps)
        for obj in objs:
            kubernetes_validate.validate(obj, KUBE_VERSIONS[0], strict=True)
        env = [e["name"] for e in sg["env"]]
        for args, code, out in scopegate_check(objs, env):
            self.assertEqual(code, 0, f"{args}: {out}")

    def test_sidecar_without_an_app_image_is_refused(self):
        v = values("sidecar")
        v["sidecar"]["app"]["image"] = ""
        with self.assertRaisesRegex(helm.HelmError, "sidecar.app.image is required"):
            render(v)

    def test_authz_listens_on_its_port_without_listen_or_upstreams(self):
        objs = objects(render(values("authz")))
        _, cfg = config_of(objs)
        self.assertEqual(cfg["authz"], {"listen": "0.0.0.0:9191", "statuses": "nginx"})
        for key in ("listen", "upstreams", "environments"):
            self.assertNotIn(key, cfg)
        c = scopegate_container(pod_spec(objs))
        self.assertEqual(c["ports"][0], {"name": "authz", "containerPort": 9191, "protocol": "TCP"})
        svc = one(objs, "Service")
        self.assertEqual(svc["spec"]["ports"][0],
                         {"name": "authz", "port": 9191, "targetPort": "authz", "protocol": "TCP"})
        self.assertEqual(one(objs, "PodDisruptionBudget")["spec"]["minAvailable"], 2)

    def test_tls_mounts_the_secret_and_names_its_files(self):
        objs = objects(render(values("tls")))
        _, cfg = config_of(objs)
        self.assertEqual(cfg["tls"], {"cert_file": "/etc/scopegate/tls/tls.crt",
                                      "key_file": "/etc/scopegate/tls/tls.key",
                                      "client_ca_file": "/etc/scopegate/tls/ca.crt"})
        spec = pod_spec(objs)
        vols = {v["name"]: v for v in spec["volumes"]}
        self.assertEqual(vols["scopegate-tls"]["secret"]["secretName"], "scopegate-tls")
        self.assertEqual(vols["jwe-keys"]["secret"]["secretName"], "scopegate-jwe-keys")
        mounts = {m["name"]: m["mountPath"] for m in scopegate_container(spec)["volumeMounts"]}
        self.assertEqual(mounts["scopegate-tls"], "/etc/scopegate/tls")
        self.assertEqual(mounts["jwe-keys"], "/etc/scopegate/keys")
        self.assertEqual(one(objs, "Service")["spec"]["type"], "LoadBalancer")

    def test_gateway_full_renders_every_optional_object_wired_to_the_pods(self):
        objs = objects(render(values("gateway-full")))
        kinds = sorted(o["kind"] for o in objs)
        self.assertEqual(kinds, sorted(["ConfigMap", "ConfigMap", "Deployment", "Service",
                                        "ServiceAccount", "HorizontalPodAutoscaler",
                                        "PodDisruptionBudget", "NetworkPolicy",
                                        "ServiceMonitor", "PrometheusRule"]))
        dep = one(objs, "Deployment")
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        self.assertNotIn("replicas", dep["spec"])  # the HPA owns it
        self.assertEqual(dep["spec"]["template"]["spec"]["containers"][0]["image"],
                         "registry.example/scopegate@sha256:" + "0123456789abcdef" * 4)
        hpa = one(objs, "HorizontalPodAutoscaler")
        self.assertEqual(hpa["spec"]["scaleTargetRef"],
                         {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]})
        self.assertEqual((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]), (3, 12))
        pdb = one(objs, "PodDisruptionBudget")
        self.assertLessEqual(pdb["spec"]["selector"]["matchLabels"].items(), pod_labels.items())
        np = one(objs, "NetworkPolicy")
        self.assertLessEqual(np["spec"]["podSelector"]["matchLabels"].items(), pod_labels.items())
        http_rule, admin_rule = np["spec"]["ingress"]
        self.assertEqual(http_rule["ports"], [{"port": "http", "protocol": "TCP"}])
        self.assertEqual(http_rule["from"][0]["namespaceSelector"]["matchLabels"],
                         {"kubernetes.io/metadata.name": "ingress-nginx"})
        self.assertEqual(admin_rule["ports"], [{"port": "admin", "protocol": "TCP"}])
        self.assertEqual(admin_rule["from"][0]["namespaceSelector"]["matchLabels"],
                         {"kubernetes.io/metadata.name": "monitoring"})
        svc = one(objs, "Service")
        sm = one(objs, "ServiceMonitor")
        self.assertEqual(sm["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(sm["metadata"]["labels"]["release"], "kube-prometheus-stack")
        self.assertLessEqual(sm["spec"]["selector"]["matchLabels"].items(),
                             svc["metadata"]["labels"].items())
        self.assertEqual(sm["spec"]["namespaceSelector"], {"matchNames": [NAMESPACE]})
        self.assertIn(sm["spec"]["endpoints"][0]["port"], [p["name"] for p in svc["spec"]["ports"]])
        self.assertEqual(sm["spec"]["endpoints"][0]["path"], "/metrics")
        _, cfg = config_of(objs)
        self.assertEqual(cfg["replay_store"], "redis://redis-master.redis.svc:6379/0")

    def test_alerts_use_only_metrics_scopegate_exports(self):
        objs = objects(render(values("gateway-full")))
        rule = one(objs, "PrometheusRule")
        alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
        self.assertEqual(set(alerts), {"ScopegateHigh5xxRatio", "ScopegateAuthFailureSpike",
                                       "ScopegatePolicyReloadFailed", "ScopegateTLSReloadFailed",
                                       "ScopegateDown"})
        exported = set(re.findall(r'"(scopegate_[a-z_]+)"', "".join(
            p.read_text() for p in (ROOT / "src").rglob("*.rs"))))
        for name, expr in alerts.items():
            promql_parser.parse(expr)  # raises ValueError on a syntax error
            for metric in re.findall(r"scopegate_[a-z_]+", expr):
                self.assertIn(metric, exported, f"{name} uses {metric}")
            self.assertIn('namespace="edge", service="sg-scopegate"', expr, name)
        self.assertIn('status_class="5xx"', alerts["ScopegateHigh5xxRatio"])
        # Every 401 code of SPEC §6 counts as an auth failure, and no 403 does.
        codes = set(re.search(r'code=~"([^"]+)"', alerts["ScopegateAuthFailureSpike"])[1].split("|"))
        self.assertIn("token_expired", codes)
        self.assertIn("invalid_api_key", codes)
        self.assertNotIn("insufficient_scope", codes)
        self.assertEqual(len(codes), 14)


class Rollouts(unittest.TestCase):
    """Config changes roll the pods; policy changes reload in place and must not."""

    def test_policy_change_leaves_the_pod_template_alone(self):
        base = values("gateway-minimal")
        changed = copy.deepcopy(base)
        changed["policy"] = {"content": {"version": 1, "scopes": {"x": "y"}, "routes": [
            {"id": "h", "methods": ["GET"], "path": "/h", "auth": ["none"]}]}}
        a, b = objects(render(base)), objects(render(changed))
        self.assertNotEqual([o for o in a if o["kind"] == "ConfigMap"],
                            [o for o in b if o["kind"] == "ConfigMap"])
        self.assertEqual(one(a, "Deployment"), one(b, "Deployment"))

    def test_config_change_changes_the_checksum_which_is_the_configs_hash(self):
        base = values("gateway-minimal")
        changed = copy.deepcopy(base)
        changed["config"]["limits"] = {"drain_timeout": "20s"}
        for v in (base, changed):
            objs = objects(render(v))
            cm, _ = config_of(objs)
            ann = one(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
            self.assertEqual(ann["checksum/config"],
                             hashlib.sha256(cm["data"]["scopegate.yaml"].rstrip("\n").encode()).hexdigest())
        ann = [one(objects(render(v)), "Deployment")["spec"]["template"]["metadata"]["annotations"]
               for v in (base, changed)]
        self.assertNotEqual(ann[0]["checksum/config"], ann[1]["checksum/config"])

    def test_existing_config_map_and_policy_secret_are_mounted_not_rendered(self):
        v = values("gateway-minimal")
        v["config"]["existingConfigMap"] = "my-config"
        v["policy"] = {"existingSecret": "my-policy"}
        objs = objects(render(v))
        self.assertNotIn("ConfigMap", [o["kind"] for o in objs])
        vols = {x["name"]: x for x in pod_spec(objs)["volumes"]}
        self.assertEqual(vols["scopegate-config"]["configMap"]["name"], "my-config")
        self.assertEqual(vols["scopegate-policy"]["secret"]["secretName"], "my-policy")
        self.assertNotIn("checksum/config", one(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"])


class Refusals(unittest.TestCase):
    def test_grace_period_not_above_the_drain_fails_the_render(self):
        v = values("gateway-minimal")
        v["config"]["limits"] = {"drain_timeout": "1m"}
        with self.assertRaisesRegex(helm.HelmError, r"terminationGracePeriodSeconds \(35\) must exceed"):
            render(v)
        v["terminationGracePeriodSeconds"] = 61
        render(v)

    def test_gateway_without_an_upstream_fails_the_render(self):
        with self.assertRaisesRegex(helm.HelmError, "config.upstreams.default is required"):
            render({})

    def test_schema_refuses_typos_unknown_modes_and_chart_owned_keys(self):
        with helm.Chart.load(CHART) as chart:
            for bad in ({"mode": "edge"}, {"replicas": 3}, {"config": {"listen": "0.0.0.0:1"}},
                        {"securityContext": {"runAsNonRoot": False}},
                        {"extraEnv": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
                        {"tls": {"enabled": True}}):
                with self.subTest(bad=bad), self.assertRaises(helm.HelmValuesError):
                    chart.validate_schema(bad)


class Examples(unittest.TestCase):
    """deploy/kubernetes/*.yaml are the chart's output, and apply as they stand."""

    def test_readme_sidecar_snippet_agrees_with_the_example(self):
        readme = (ROOT / "README.md").read_text()
        section = readme[readme.index("**Sidecar in your own pod.**"):]
        snippet = yaml.safe_load(section[section.index("```yaml") + 7:section.index("```\n")])
        example = pod_spec([d for d in yaml.safe_load_all((EXAMPLES / "sidecar.yaml").read_text()) if d])
        [short], [full] = snippet["spec"]["initContainers"], example["initContainers"]
        self.assertEqual(short["restartPolicy"], "Always")
        for key in ("args", "env", "resources", "volumeMounts"):
            self.assertEqual(short[key], full[key], key)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertEqual(short[probe]["httpGet"], full[probe]["httpGet"], probe)
        self.assertEqual([(p["name"], p["containerPort"]) for p in short["ports"]],
                         [(p["name"], p["containerPort"]) for p in full["ports"]])
        self.assertEqual(snippet["spec"]["volumes"], [
            {"name": v["name"], "configMap": {"name": v["configMap"]["name"]}} for v in example["volumes"]])
        self.assertEqual(snippet["spec"]["terminationGracePeriodSeconds"],
                         example["terminationGracePeriodSeconds"])
        self.assertNotIn("ports", snippet["spec"]["containers"][0])

    def test_examples_are_the_charts_current_output(self):
        sys.path.insert(0, str(EXAMPLES))
        import generate  # noqa: E402  (deploy/kubernetes/generate.py)
        for path, text in generate.examples().items():
            with self.subTest(example=path.name):
                self.assertEqual(path.read_text(), text,
                                 f"{path.name} is stale: run python3 deploy/kubernetes/generate.py")

    def test_examples_validate_and_reference_only_what_they_define(self):
        for path in sorted(EXAMPLES.glob("*.yaml")):
            objs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            defined = {(o["kind"], o["metadata"]["name"]) for o in objs}
            for obj in objs:
                for version in KUBE_VERSIONS:
                    kubernetes_validate.validate(obj, version, strict=True)
            spec = pod_spec(objs)
            assert_restricted(self, spec, path.name)
            for vol in spec["volumes"]:
                if "configMap" in vol:
                    self.assertIn(("ConfigMap", vol["configMap"]["name"]), defined, path.name)
                if "secret" in vol and not vol["secret"].get("optional"):
                    self.assertIn(("Secret", vol["secret"]["secretName"]), defined, path.name)
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref and not ref.get("optional"):
                        self.assertIn(("Secret", ref["name"]), defined, f"{path.name}: {e['name']}")
                for e in c.get("envFrom", []):
                    ref = e.get("secretRef")
                    if ref and not ref.get("optional"):
                        self.assertIn(("Secret", ref["name"]), defined, path.name)
            secrets = [o for o in objs if o["kind"] == "Secret"]
            env = [k for s in secrets for k in s.get("stringData", {})]
            env_names = [e["name"] for c in spec.get("initContainers", []) + spec["containers"]
                         for e in c.get("env", [])]
            for args, code, out in scopegate_check(objs, env_names + env):
                self.assertEqual(code, 0, f"{path.name} {args}: {out}")


if __name__ == "__main__":
    unittest.main(verbosity=1)
