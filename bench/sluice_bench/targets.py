"""What the load is sent to: the upstreams, Sluice (1 worker; 2 workers on Redis), LiteLLM, direct.

Every target answers the same four kinds of request, each on its own route so nginx can serve it
without looking at the body:

* ``chat``   -- non-streaming, fixed JSON (nginx, or the Python upstream)
* ``stream`` -- streaming, fixed SSE body (nginx)
* ``paced``  -- streaming, paced: 20 chunks 20 ms apart (Python upstream)
* ``slow``   -- streaming, slow: for the many-concurrent-streams test (Python upstream)

Gateways map these to model names; "direct" maps them to upstream paths.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sluice_bench import payloads
from sluice_bench.procs import Managed, Pinning, free_port, start, wait_port

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
LITELLM_VENV = BENCH_DIR / ".litellm-venv"
LITELLM_VERSION = "1.100.0"
UPSTREAM_KEY = "sk-upstream-bench-0000"

KINDS = ("chat", "stream", "paced", "slow")
GATEWAY_MODELS = {
    "chat": payloads.MODEL,
    "stream": "bench-stream",
    "paced": "bench-paced",
    "slow": "bench-slow",
}
#: The rate limit Sluice runs with: high enough never to fire. Per key (``keys create --rpm``) when the
#: CLI has it; else per team in the config when ``sluice check-config`` accepts ``rate_limit``; else none.
SLUICE_RPM = 1_000_000


@dataclass(frozen=True)
class StreamShape:
    interval_ms: int
    chunks: int


@dataclass(frozen=True)
class Upstreams:
    fixed: str  # http://127.0.0.1:P (nginx or Python): /v1/... JSON, /stream/v1/... SSE
    paced: str  # http://127.0.0.1:Q (Python): /pace/{ms}/{n}/v1/...
    paced_shape: StreamShape
    slow_shape: StreamShape
    fixed_server: str  # "nginx" | "python"

    def base_url(self, kind: str) -> str:
        """The OpenAI ``base_url`` (ending in /v1) serving ``kind``."""
        if kind == "chat":
            return f"{self.fixed}/v1"
        if kind == "stream":
            return f"{self.fixed}/stream/v1"
        shape = self.paced_shape if kind == "paced" else self.slow_shape
        return f"{self.paced}/pace/{shape.interval_ms}/{shape.chunks}/v1"

    def chunks(self, kind: str) -> int:
        if kind == "paced":
            return self.paced_shape.chunks
        if kind == "slow":
            return self.slow_shape.chunks
        return payloads.FIXED_STREAM_CHUNKS


@dataclass
class Target:
    name: str
    description: str
    key: str
    proc: Managed | None = None
    base: str = ""  # gateway root URL; empty for direct
    upstreams: Upstreams | None = None
    #: Extra processes whose CPU and memory count as the gateway's (Redis for --workers 2).
    helpers: list[Managed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def is_gateway(self) -> bool:
        return self.proc is not None

    def url(self, kind: str) -> str:
        if self.proc is None:
            assert self.upstreams is not None
            return f"{self.upstreams.base_url(kind)}/chat/completions"
        return f"{self.base}/v1/chat/completions"

    def model(self, kind: str) -> str:
        return GATEWAY_MODELS[kind] if self.proc is not None else payloads.MODEL

    def pids(self) -> list[int]:
        pids: list[int] = []
        if self.proc is not None:
            pids.extend(self.proc.tree())
        for h in self.helpers:
            pids.extend(h.tree())
        return pids

    def pause(self, paused: bool) -> None:
        """Freeze (SIGSTOP) or resume (SIGCONT) the gateway and its helpers."""
        sig = signal.SIGSTOP if paused else signal.SIGCONT
        for m in ([self.proc] if self.proc is not None else []) + self.helpers:
            m.signal_group(sig)

    def stop(self) -> None:
        if self.proc is not None:
            self.pause(False)
            self.proc.stop()
        for h in self.helpers:
            h.stop()


def post_json(url: str, body: bytes, key: str, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wait_ready(target: Target, timeout: float) -> None:
    """Poll a real chat request through the target until it answers 200 with a completion."""
    deadline = time.monotonic() + timeout
    body = payloads.chat_request(target.model("chat"))
    last = "no answer"
    while time.monotonic() < deadline:
        if target.proc is not None and target.proc.proc.poll() is not None:
            raise RuntimeError(f"{target.name} exited ({target.proc.proc.returncode}):\n{target.proc.tail()}")
        try:
            status, data = post_json(target.url("chat"), body, target.key, timeout=5)
            if status == 200 and json.loads(data).get("choices"):
                return
            last = f"HTTP {status}: {data[:300]!r}"
        except (OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.25)
    tail = target.proc.tail() if target.proc is not None else ""
    raise TimeoutError(f"{target.name} not ready after {timeout:.0f}s: {last}\n{tail}")


def direct(upstreams: Upstreams) -> Target:
    return Target(
        name="direct",
        description=f"straight to the upstream ({upstreams.fixed_server}); the floor",
        key="",
        upstreams=upstreams,
    )


# ------------------------------------------------------------------------------------------ Sluice


def nginx_proxy(workdir: Path, upstreams: Upstreams, pinning: Pinning) -> Target:
    """nginx reverse-proxying the fixed upstream from the gateway core: the floor for any proxy."""
    from sluice_bench.nginx import start_nginx_proxy

    port = free_port()
    upstream_port = int(upstreams.fixed.rsplit(":", 1)[1])
    proc = start_nginx_proxy(workdir, port, upstream_port, pinning, pinning.gateway)
    return Target(
        name="nginx-proxy",
        description="nginx as a reverse proxy on the gateway core (reference: no auth, no limits, no log)",
        key="",
        proc=proc,
        base=f"http://127.0.0.1:{port}",
        notes=[
            "a C reverse proxy placed where the gateways are (same core, same hops): what "
            "any proxy costs on this machine; chat requests only (it cannot route streams by model)"
        ],
        settings={"cores": list(pinning.gateway) if pinning.enabled else "unpinned"},
    )


def sluice_bin() -> Path:
    """The ``sluice`` script of the interpreter running the bench (the project's venv), else PATH's."""
    beside = Path(sys.executable).parent / "sluice"
    if beside.exists():
        return beside
    found = shutil.which("sluice")
    return Path(found) if found else beside


def sluice_available() -> tuple[bool, str]:
    binary = sluice_bin()
    if not binary.exists():
        return False, f"{binary} not found"
    proc = subprocess.run([str(binary), "--help"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return False, f"`sluice --help` failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
    if "serve" not in proc.stdout:
        return False, "`sluice --help` lists no `serve` command"
    return True, ""


def sluice_config(
    upstreams: Upstreams, *, port: int, db: Path, state_url: str, rate_limit: bool
) -> dict[str, object]:
    team: dict[str, object] = {}
    if rate_limit:
        team["rate_limit"] = {"rpm": SLUICE_RPM}
    providers: dict[str, object] = {}
    models: dict[str, object] = {}
    for kind in KINDS:
        providers[f"up_{kind}"] = {
            "type": "openai",
            "base_url": upstreams.base_url(kind),
            "api_key": "env:BENCH_UPSTREAM_KEY",
        }
        models[GATEWAY_MODELS[kind]] = {"targets": [{"provider": f"up_{kind}", "model": payloads.MODEL}]}
    return {
        "server": {"host": "127.0.0.1", "port": port, "admin_key": "env:SLUICE_ADMIN_KEY"},
        "store": {"url": f"sqlite:///{db}"},
        "state": {"url": state_url},
        "providers": providers,
        "models": models,
        "teams": {"bench": team},
    }


def _sluice_env() -> dict[str, str]:
    env = dict(os.environ)
    env["SLUICE_ADMIN_KEY"] = "sk-admin-bench-" + secrets.token_hex(8)
    env["BENCH_UPSTREAM_KEY"] = UPSTREAM_KEY
    return env


def _write_sluice_config(
    workdir: Path,
    name: str,
    upstreams: Upstreams,
    port: int,
    state_url: str,
    env: dict[str, str],
    *,
    team_limit: bool,
) -> tuple[Path, bool, str]:
    """Write the config; with a team rate limit if wanted and ``sluice check-config`` accepts it."""
    cfg_dir = workdir / name
    cfg_dir.mkdir(parents=True, exist_ok=True)
    path = cfg_dir / "sluice.yaml"
    db = cfg_dir / "bench.db"
    detail = ""
    for rate_limit in (True, False) if team_limit else (False,):
        cfg = sluice_config(upstreams, port=port, db=db, state_url=state_url, rate_limit=rate_limit)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        proc = subprocess.run(
            [str(sluice_bin()), "check-config", str(path)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode == 0:
            return path, rate_limit, detail
        detail = (proc.stderr or proc.stdout).strip()[-400:]
    raise RuntimeError(f"sluice check-config rejects the bench config: {detail}")


def _key_rpm_supported(env: dict[str, str]) -> bool:
    proc = subprocess.run(
        [str(sluice_bin()), "keys", "create", "--help"], capture_output=True, text=True, env=env, check=False
    )
    return proc.returncode == 0 and "--rpm" in proc.stdout


def _create_key(config: Path, env: dict[str, str], *, rpm: int | None) -> str:
    extra = ["--rpm", str(rpm)] if rpm is not None else []
    proc = subprocess.run(
        [str(sluice_bin()), "keys", "create", "--config", str(config), "--team", "bench", "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sluice keys create failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
    # The JSON object may follow log lines: take the last line that parses.
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("key"), str):
            return str(data["key"])
    data = json.loads(proc.stdout)
    return str(data["key"])


def start_redis(workdir: Path, pinning: Pinning) -> tuple[Managed, int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    rdir = workdir / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(rdir),
        "--protected-mode",
        "yes",
    ]
    proc = start("redis", argv, log_dir=workdir, pinning=pinning)
    wait_port(port, 10, proc.proc)
    return proc, port


def start_sluice(
    workdir: Path, upstreams: Upstreams, pinning: Pinning, *, workers: int = 1, ready_timeout: float = 60.0
) -> Target:
    name = "sluice" if workers == 1 else f"sluice-w{workers}"
    env = _sluice_env()
    helpers: list[Managed] = []
    state_url = "memory://"
    if workers > 1:
        redis, redis_port = start_redis(workdir, pinning)
        helpers.append(redis)
        state_url = f"redis://127.0.0.1:{redis_port}/0"
    port = free_port()
    try:
        key_limit = _key_rpm_supported(env)
        config, team_limited, why_not = _write_sluice_config(
            workdir, name, upstreams, port, state_url, env, team_limit=not key_limit
        )
        key = _create_key(config, env, rpm=SLUICE_RPM if key_limit else None)
        argv = [
            str(sluice_bin()),
            "serve",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        if workers > 1:
            argv += ["--workers", str(workers)]
        # One worker gets the gateway core; N workers get every core (they need more than one).
        cores = pinning.gateway if workers == 1 else (*pinning.gateway, *pinning.load)
        proc = start(name, argv, log_dir=workdir, env=env, cores=cores, pinning=pinning)
    except Exception:
        for h in helpers:
            h.stop()
        raise
    notes = [
        "gateway key auth (sk-sluice-...), spend accounting and request log to SQLite "
        f"({'redis' if workers > 1 else 'in-memory'} state)",
    ]
    if key_limit:
        notes.append(f"per-key rate limit rpm={SLUICE_RPM:,} (keys create --rpm)")
    elif team_limited:
        notes.append(f"per-team rate limit rpm={SLUICE_RPM:,} (this build's keys create has no --rpm)")
    else:
        notes.append("no rate limit: this build has neither `keys create --rpm` nor a team `rate_limit`")
        if why_not:
            notes.append(f"check-config said: {why_not.splitlines()[-1][:200]}")
    target = Target(
        name=name,
        description=f"Sluice, {workers} worker{'s' if workers > 1 else ''}",
        key=key,
        proc=proc,
        base=f"http://127.0.0.1:{port}",
        helpers=helpers,
        notes=notes,
        settings={
            "workers": workers,
            "state": state_url.split(":")[0],
            "rate_limit": "key" if key_limit else ("team" if team_limited else None),
            "cores": list(cores) if pinning.enabled else "unpinned",
        },
    )
    try:
        wait_port(port, ready_timeout, proc.proc)
        wait_ready(target, ready_timeout)
    except Exception:
        target.stop()
        raise
    return target


# ----------------------------------------------------------------------------------------- LiteLLM


def litellm_bin() -> Path:
    return LITELLM_VENV / "bin" / "litellm"


def ensure_litellm_venv(log: list[str]) -> None:
    """Create bench/.litellm-venv with ``litellm[proxy]==1.100.0`` unless it is already there."""
    if litellm_bin().exists():
        return
    log.append(f"creating {LITELLM_VENV} with litellm[proxy]=={LITELLM_VERSION}")
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run(
        [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
        check=True,
    )


#: uvicorn logging with the per-request access log off (it costs LiteLLM CPU that Sluice does not spend).
_UVICORN_QUIET: dict[str, object] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"default": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
    },
}


def litellm_config(upstreams: Upstreams, master_key: str) -> dict[str, object]:
    model_list = [
        {
            "model_name": GATEWAY_MODELS[kind],
            "litellm_params": {
                "model": f"openai/{payloads.MODEL}",
                "api_base": upstreams.base_url(kind),
                "api_key": "os.environ/BENCH_UPSTREAM_KEY",
                "rpm": 1_000_000,
            },
        }
        for kind in KINDS
    ]
    return {
        "model_list": model_list,
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"drop_params": True, "set_verbose": False},
    }


def start_litellm(
    workdir: Path, upstreams: Upstreams, pinning: Pinning, ready_timeout: float = 120.0
) -> Target:
    if not litellm_bin().exists():
        raise RuntimeError(f"{litellm_bin()} not found (run without --no-install to create it)")
    master_key = "sk-litellm-master-" + secrets.token_hex(8)
    cfg_dir = workdir / "litellm"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    config = cfg_dir / "config.yaml"
    config.write_text(yaml.safe_dump(litellm_config(upstreams, master_key), sort_keys=False))
    log_config = cfg_dir / "uvicorn-log.json"
    log_config.write_text(json.dumps(_UVICORN_QUIET))
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
            # No network here: use the bundled model-cost map instead of fetching it at import.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
        }
    )
    env.pop("DATABASE_URL", None)
    argv = [
        str(litellm_bin()),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
        "--telemetry",
        "False",
    ]
    proc = start(
        "litellm", argv, log_dir=workdir, env=env, cwd=cfg_dir, cores=pinning.gateway, pinning=pinning
    )
    target = Target(
        name="litellm",
        description=f"LiteLLM proxy {LITELLM_VERSION}, 1 worker",
        key=master_key,
        proc=proc,
        base=f"http://127.0.0.1:{port}",
        notes=[
            "master key auth; no database (LiteLLM's key store, spend log and per-key limits need "
            "PostgreSQL + Prisma), so it does less per request than Sluice; deployment rpm=1,000,000",
            "uvicorn access log off and LITELLM_LOG=ERROR (LiteLLM's own production advice): "
            "every choice here favours LiteLLM",
        ],
        settings={
            "workers": 1,
            "database": None,
            "cores": list(pinning.gateway) if pinning.enabled else "unpinned",
        },
    )
    try:
        wait_port(port, ready_timeout, proc.proc)
        wait_ready(target, ready_timeout)
    except Exception:
        target.stop()
        raise
    return target


def litellm_version() -> str | None:
    pip_show = LITELLM_VENV / "bin" / "python"
    if not pip_show.exists():
        return None
    proc = subprocess.run(
        [str(pip_show), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or None
