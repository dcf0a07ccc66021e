"""The deployment files agree with each other and with docs/METRICS.md.

Checks docker-compose.yml, docs/docker/ (Dockerfile, its .dockerignore, sluice.toml, auth file,
initdb), docs/prometheus.yml and docs/grafana/ without running any of them: images are pinned,
every mounted or copied file exists, the scrape target is the sluice service on its metrics port,
and the Grafana dashboard's queries use only documented metrics through the provisioned
datasource. Needs neither PostgreSQL nor Sluice. `docker compose config` and
`sluice --check-config` run only when they are available.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKER_DIR = REPO / "docs" / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
SLUICE_TOML = DOCKER_DIR / "sluice.toml"
PROMETHEUS = REPO / "docs" / "prometheus.yml"
GRAFANA_DIR = REPO / "docs" / "grafana"
DASHBOARD = GRAFANA_DIR / "sluice-dashboard.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = GRAFANA_DIR / "provisioning" / "dashboards" / "sluice.yml"
METRICS_DOC = REPO / "docs" / "METRICS.md"
METRICS_HPP = REPO / "src" / "metrics.hpp"

REQUIRED_SERVICES = {"postgres", "sluice", "prometheus", "grafana"}
BUILD_PACKAGES = {"cmake", "g++", "libboost-dev", "libssl-dev", "libspdlog-dev", "libfmt-dev",
                  "prometheus-cpp-dev", "libpq-dev", "libtoml11-dev"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# ---- helpers ---------------------------------------------------------------------------------


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose() -> dict:
    doc = load_yaml(COMPOSE)
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), "no services"
    return doc


def image_problem(image: str) -> str | None:
    """Why `image` is not pinned to an exact version, or None."""
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag"
    tag = last.split(":", 1)[1]
    if tag == "latest" or "latest" in tag.split("-"):
        return "uses latest"
    if not re.search(r"\d", tag):
        return f"tag {tag!r} names no version"
    return None


def split_volume(spec) -> tuple[str | None, str]:
    """(source, target) of a compose volume entry, short or long syntax."""
    if isinstance(spec, dict):
        return spec.get("source"), spec["target"]
    parts = spec.split(":")
    if len(parts) == 1:
        return None, parts[0]  # anonymous volume
    return parts[0], parts[1]


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(host path, container path) of each bind mount of a service."""
    out = []
    for spec in service.get("volumes", []):
        source, target = split_volume(spec)
        if source and (source.startswith(".") or source.startswith("/") or source.startswith("~")):
            out.append((source, target))
    return out


def documented_metrics() -> dict[str, str]:
    """name -> type of every metric in docs/METRICS.md's tables."""
    metrics = {}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`(sluice_[a-z0-9_]+)`\s*\|\s*(counter|gauge|histogram)\s*\|", line)
        if m:
            assert m.group(1) not in metrics, f"{m.group(1)} is listed twice in METRICS.md"
            metrics[m.group(1)] = m.group(2)
    return metrics


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bsluice_[a-zA-Z0-9_]+\b", expr))


def resolve_series(name: str, metrics: dict[str, str]) -> str | None:
    """The documented metric a series name in a query belongs to, or None."""
    if name in metrics:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and metrics.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return None


def all_panels(dashboard: dict) -> list[dict]:
    panels = []
    for p in dashboard.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return panels


def walk(node, key: str):
    """Every value stored under `key` anywhere in a JSON tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from walk(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v, key)


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker's .dockerignore `patterns` leave `path` (relative, '/'-separated) out of
    the build context: the last matching pattern wins, '!' re-includes, and a pattern that
    matches a directory matches everything below it."""
    excluded = False
    candidates = [str(PurePosixPath(*PurePosixPath(path).parts[:i]))
                  for i in range(1, len(PurePosixPath(path).parts) + 1)]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        if pattern == "**" or any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            excluded = not negate
    return excluded


# ---- docker-compose.yml ----------------------------------------------------------------------


def test_compose_services_and_pinned_images(compose):
    services = compose["services"]
    assert REQUIRED_SERVICES <= set(services), f"services: {sorted(services)}"
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: neither image nor build"
        if "image" in service:
            problem = image_problem(service["image"])
            assert problem is None, f"{name}: image {service['image']!r} {problem}"
    assert services["postgres"]["image"].split(":", 1)[1].startswith("15."), \
        "PostgreSQL 15, pinned to a minor release"
    assert "build" in services["sluice"], "sluice is built from the repository"


def test_compose_files_exist(compose):
    declared_volumes = set((compose.get("volumes") or {}).keys())
    for name, service in compose["services"].items():
        for spec in service.get("volumes", []):
            source, target = split_volume(spec)
            assert target.startswith("/"), f"{name}: container path {target!r} is not absolute"
            if source is None:
                continue
            if source.startswith((".", "/", "~")):
                assert source.startswith("./"), \
                    f"{name}: mount {source!r} must be relative to the repository (./...)"
                assert (REPO / source).exists(), f"{name}: mounts {source}, which does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source!r} is not declared"
        build = service.get("build")
        if build is not None:
            if isinstance(build, str):
                build = {"context": build}
            context = REPO / build.get("context", ".")
            assert context.is_dir(), f"{name}: build context {context} is missing"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        for env_file in ([service["env_file"]] if isinstance(service.get("env_file"), str)
                         else service.get("env_file", [])):
            assert (REPO / env_file).is_file(), f"{name}: env_file {env_file} is missing"
        for dep in service.get("depends_on", []):
            assert dep in compose["services"], f"{name}: depends on unknown service {dep}"


def test_compose_healthchecks(compose):
    services = compose["services"]
    for name in ("postgres", "sluice", "prometheus", "grafana"):
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name}: no healthcheck"
    # sluice waits for a healthy database
    assert services["sluice"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_sluice_config_mount(compose):
    sluice = compose["services"]["sluice"]
    mounts = dict((target, source) for source, target in bind_mounts(sluice))
    assert mounts.get("/etc/sluice/sluice.toml") == "./docs/docker/sluice.toml"
    config = tomllib.loads(SLUICE_TOML.read_text(encoding="utf-8"))
    auth = Path("/etc/sluice") / config["auth_file"]
    assert str(auth) in mounts, f"the auth file {auth} must be mounted beside the config"
    assert (REPO / mounts[str(auth)]).is_file()
    command = sluice.get("command")
    if command is not None:
        assert command == ["--config", "/etc/sluice/sluice.toml"]


def test_no_machine_paths_in_deploy_files():
    files = [COMPOSE, DOCKERFILE, SLUICE_TOML, PROMETHEUS, DASHBOARD, DATASOURCES,
             DASHBOARD_PROVIDER, METRICS_DOC, *sorted(DOCKER_DIR.rglob("*"))]
    for path in files:
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert str(REPO) not in text, f"{path.relative_to(REPO)} contains this machine's path"
            assert not re.search(r"(/home/|/root/|/work/)", text), \
                f"{path.relative_to(REPO)} contains an absolute machine path"


def test_docker_compose_config_opportunistic():
    """`docker compose config` validates against Compose's own schema, when docker can run."""
    docker = shutil.which("docker")
    # Compose v2 only (the plugin): Debian's docker-compose 1.29 reads a file without a
    # top-level `version` as the legacy v1 format.
    candidates = [[docker, "compose"]] if docker else []
    for base in candidates:
        try:
            probe = subprocess.run(base + ["version"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode != 0:
            continue
        result = subprocess.run(base + ["-f", str(COMPOSE), "config", "-q"], capture_output=True,
                                text=True, timeout=60, cwd=REPO)
        assert result.returncode == 0, f"{' '.join(base)} config failed:\n{result.stderr}"
        return
    pytest.skip("docker compose is not available here")


# ---- docs/docker -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile(compose):
    build = compose["services"]["sluice"]["build"]
    context = REPO / build.get("context", ".")
    instructions = dockerfile_instructions()
    froms = [args for word, args in instructions if word == "FROM"]
    assert froms, "no FROM"
    for args in froms:
        image = args.split()[0]
        assert image.startswith("debian:12"), f"base image {image}: Debian 12"
        assert image_problem(image) is None, f"base image {image} is not pinned"

    run_text = " ".join(args for word, args in instructions if word == "RUN")
    installed = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", run_text))
    missing = BUILD_PACKAGES - installed
    assert not missing, f"the Dockerfile does not install {sorted(missing)}"
    assert "cmake --build" in run_text

    ignore_file = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")
    patterns = []
    if ignore_file.exists():
        patterns = [line.strip() for line in ignore_file.read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    for word, args in instructions:
        if word != "COPY" or "--from=" in args:
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (context / source).exists(), f"COPY {source}: not in the build context"
            assert not dockerignore_excludes(patterns, source.rstrip("/")), \
                f"COPY {source}: excluded by {ignore_file.name}"
    # the sources CMake needs are in the context
    for needed in ("CMakeLists.txt", "src/http/dashboard.html", "src/main.cpp", "config", "pools",
                   "protocol"):
        assert not dockerignore_excludes(patterns, needed), f"{needed} excluded from the context"
    assert dockerignore_excludes(patterns, "build/sluice"), "build trees should stay out"

    entry = " ".join(args for word, args in instructions if word in ("ENTRYPOINT", "CMD"))
    assert "sluice" in entry and "/etc/sluice/sluice.toml" in entry and "--config" in entry


def test_sluice_toml(compose):
    config = tomllib.loads(SLUICE_TOML.read_text(encoding="utf-8"))
    assert config["metrics_listen"] == "0.0.0.0:9127"
    assert any(addr.endswith(":6432") for addr in config["listen"])
    for name, server in config["servers"].items():
        assert server["host"] in compose["services"], \
            f"server {name}: host {server['host']!r} is not a compose service"
    auth_file = SLUICE_TOML.parent / config["auth_file"]
    assert auth_file.is_file()
    users = dict(re.findall(r'^"([^"]+)"\s+"([^"]*)"\s*$', auth_file.read_text(), re.M))
    # every role the database creates logs in through Sluice with the same password
    roles = {}
    for sql in sorted((DOCKER_DIR / "initdb").glob("*.sql")):
        roles.update(re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD '([^']*)'", sql.read_text()))
    assert roles, "the initdb scripts create no login role"
    for role, password in roles.items():
        assert users.get(role) == password, f"role {role}: auth file and initdb disagree"
    postgres = compose["services"]["postgres"]
    env = postgres.get("environment", {})
    for db in config.get("databases", {}):
        assert env.get("POSTGRES_DB") == config["databases"][db].get("dbname", db)
    bulkheads = config.get("bulkheads", [])
    assert {b["name"] for b in bulkheads} >= {"critical", "batch"}
    capacity = config["servers"]["main"]["max_connections"]
    assert sum(b.get("reserved", 0) for b in bulkheads) <= capacity
    for b in bulkheads:
        assert b.get("reserved", 0) <= b.get("max", capacity) <= capacity, b["name"]


def find_sluice() -> Path | None:
    for candidate in (os.environ.get("SLUICE_BIN"), REPO / "build" / "sluice"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def test_sluice_toml_check_config():
    """`sluice --check-config` accepts the compose config, when a binary is at hand that knows
    its keys (metrics_listen, [[bulkheads]])."""
    binary = find_sluice()
    if binary is None:
        pytest.skip("no sluice binary ($SLUICE_BIN or build/sluice)")
    result = subprocess.run([str(binary), "--check-config", str(SLUICE_TOML)], capture_output=True,
                            text=True, timeout=30)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        lines = [line for line in output.splitlines() if line.strip()]
        if lines and all(re.search(r"(metrics_listen|bulkheads)[^:]*: unknown key", line)
                         for line in lines):
            pytest.skip(f"{binary} predates keys the compose config uses: {output}")
    assert result.returncode == 0, f"sluice --check-config {SLUICE_TOML.name}:\n{output}"


# ---- Prometheus ------------------------------------------------------------------------------


def test_prometheus_scrapes_sluice(compose):
    prom = load_yaml(PROMETHEUS)
    port = tomllib.loads(SLUICE_TOML.read_text())["metrics_listen"].rsplit(":", 1)[1]
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert "sluice" in jobs
    job = jobs["sluice"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    interval = job.get("scrape_interval", prom.get("global", {}).get("scrape_interval"))
    assert interval == "5s"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert f"sluice:{port}" in targets, targets
    for target in targets:
        assert target.split(":")[0] in compose["services"], f"{target}: not a compose service"
    mounts = {target: source for source, target in
              bind_mounts(compose["services"]["prometheus"])}
    assert mounts.get("/etc/prometheus/prometheus.yml") == "./docs/prometheus.yml"


# ---- Grafana ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def datasource_uid() -> str:
    provisioning = load_yaml(DATASOURCES)
    sources = provisioning["datasources"]
    prom = [s for s in sources if s["type"] == "prometheus"]
    assert len(prom) == 1, "one Prometheus datasource"
    return prom[0]["uid"]


def test_dashboard_structure(dashboard):
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard.get("uid") and dashboard.get("title")
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"panel {p['id']} is wider than the grid"
    assert "${DS_" not in DASHBOARD.read_text(), "no import-time ${DS_...} datasource inputs"


def test_dashboard_datasources(dashboard, datasource_uid, compose):
    refs = list(walk(dashboard, "datasource"))
    assert refs
    for ref in refs:
        if isinstance(ref, dict) and ref.get("type") == "grafana":
            continue  # the built-in annotations source
        assert isinstance(ref, dict), f"datasource given by name: {ref!r}"
        assert ref.get("uid") == datasource_uid, f"datasource {ref} is not uid {datasource_uid!r}"
        assert ref.get("type") == "prometheus"
    for p in all_panels(dashboard):
        if p["type"] != "row":
            assert p.get("targets"), f"panel {p['title']!r} has no queries"
    # the provisioned datasource points at the compose service
    source = load_yaml(DATASOURCES)["datasources"][0]
    host = re.match(r"https?://([^:/]+)", source["url"]).group(1)
    assert host in compose["services"], f"datasource url {source['url']}: not a compose service"


def test_dashboard_queries_use_documented_metrics(dashboard):
    metrics = documented_metrics()
    assert len(metrics) >= 25, "METRICS.md lists too few metrics; is its table format intact?"
    exprs = [t["expr"] for p in all_panels(dashboard) for t in p.get("targets", [])]
    variable_queries = [v["definition"] for v in dashboard.get("templating", {}).get("list", [])
                        if v.get("type") == "query"]
    assert exprs
    used = set()
    for expr in exprs + variable_queries:
        names = metric_names_in(expr)
        assert names, f"query names no sluice metric: {expr}"
        for name in names:
            metric = resolve_series(name, metrics)
            assert metric is not None, f"{name} (in {expr!r}) is not in docs/METRICS.md"
            used.add(metric)
            if metrics[metric] == "counter":
                assert re.search(rf"(rate|increase)\(\s*{name}\b", expr), \
                    f"counter {name} should be used through rate() or increase(): {expr}"
            if metrics[metric] == "histogram":
                assert name.endswith(HISTOGRAM_SUFFIXES), f"histogram {name} without a suffix"
    joined = "\n".join(exprs)

    # the panels the dashboard is for
    def has(pattern: str) -> bool:
        return re.search(pattern, joined) is not None

    assert has(r"sluice_queue_waiters"), "queue depth per bulkhead"
    assert has(r"histogram_quantile\(0\.5,.*sluice_queue_wait_seconds_bucket"), "p50 queue wait"
    assert has(r"histogram_quantile\(0\.99,.*sluice_queue_wait_seconds_bucket"), "p99 queue wait"
    assert has(r"by \([^)]*reason[^)]*\) \(rate\(sluice_admission_refusals_total"), \
        "refusal rate by reason"
    assert has(r"sluice_bulkhead_slots_in_use") and has(r"sluice_bulkhead_slots_reserved") \
        and has(r"sluice_bulkhead_slots_max"), "slots in use vs reserved / max"
    assert has(r"sluice_backend_connections"), "backend connections by state"
    assert has(r"sluice_circuit_breaker_state"), "breaker state"
    assert has(r"sluice_client_connections\b"), "client connections by state"
    assert has(r"histogram_quantile\(0\.99,.*sluice_transaction_duration_seconds_bucket"), \
        "transaction p99"


def test_grafana_provisioning_matches_compose(compose):
    grafana = compose["services"]["grafana"]
    mounts = {target: source for source, target in bind_mounts(grafana)}
    assert mounts.get("/etc/grafana/provisioning") == "./docs/grafana/provisioning"
    providers = load_yaml(DASHBOARD_PROVIDER)["providers"]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    path = PurePosixPath(providers[0]["options"]["path"])
    dashboards_in = [t for t, s in mounts.items()
                     if s == "./docs/grafana/sluice-dashboard.json"]
    assert dashboards_in, "the dashboard JSON is not mounted into grafana"
    assert any(PurePosixPath(t).parent == path or PurePosixPath(t) == path
               for t in dashboards_in), f"the dashboard is not mounted under {path}"


# ---- docs/METRICS.md -------------------------------------------------------------------------


def test_metrics_doc_matches_source():
    """METRICS.md lists exactly the metrics src/metrics.hpp declares, with the same types."""
    if not METRICS_HPP.exists():
        pytest.skip("src/metrics.hpp does not exist yet")
    declared = dict(re.findall(r'"(sluice_[a-z0-9_]+)",\s*MetricKind::(\w+)',
                               METRICS_HPP.read_text(encoding="utf-8")))
    assert declared, "could not read kMetrics from src/metrics.hpp"
    declared = {name: kind.lower() for name, kind in declared.items()}
    documented = documented_metrics()
    assert set(documented) == set(declared), (
        f"only in METRICS.md: {sorted(set(documented) - set(declared))}; "
        f"only in src/metrics.hpp: {sorted(set(declared) - set(documented))}")
    wrong = {n: (documented[n], declared[n]) for n in declared if documented[n] != declared[n]}
    assert not wrong, f"types differ (doc, source): {wrong}"
