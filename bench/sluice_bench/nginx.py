"""nginx as the fixed-response upstream: config written at run time into a temp dir.

One worker process; every route answers from memory with ``return 200 '...'`` (the request body is
read and discarded), so nginx serves tens of thousands of requests a second on one core and is never
what the benchmark measures.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from sluice_bench import payloads
from sluice_bench.procs import Managed, Pinning, start, wait_port


def available() -> bool:
    return nginx_binary() is not None


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


_PART = 3000  # nginx caps one config token at 4 KB: longer bodies are split over several variables


def _quote(text: str) -> str:
    # nginx string literals: escape backslashes and single quotes; no variables ($) in our bodies.
    if "$" in text:
        raise ValueError("nginx body must not contain '$'")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _body_maps(name: str, body: bytes) -> tuple[str, str]:
    """``map`` blocks holding ``body`` in parts, and the ``return`` argument that joins them."""
    text = body.decode()
    parts = [text[i : i + _PART] for i in range(0, len(text), _PART)]
    blocks = []
    refs = []
    for i, part in enumerate(parts):
        var = f"$bench_{name}_{i}"
        blocks.append(f"    map $request_method {var} {{ default {_quote(part)}; }}")
        refs.append("${" + var[1:] + "}")
    return "\n".join(blocks), '"' + "".join(refs) + '"'


_PREAMBLE = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 10m;
    client_body_buffer_size 1m;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    tcp_nodelay on;
"""


def render_config(workdir: Path, port: int) -> str:
    tmp = workdir
    json_maps, json_ret = _body_maps("json", payloads.chat_completion())
    sse_maps, sse_ret = _body_maps("sse", payloads.sse_body())
    models_maps, models_ret = _body_maps("models", payloads.models_list())
    return (
        _PREAMBLE.format(tmp=tmp)
        + f"""
    server_tokens off;
{json_maps}
{sse_maps}
{models_maps}
    server {{
        listen 127.0.0.1:{port} backlog=8192;
        location = /v1/chat/completions {{
            default_type application/json;
            add_header x-request-id req_bench;
            return 200 {json_ret};
        }}
        location = /stream/v1/chat/completions {{
            default_type "text/event-stream; charset=utf-8";
            add_header x-request-id req_bench;
            return 200 {sse_ret};
        }}
        location = /v1/models {{
            default_type application/json;
            return 200 {models_ret};
        }}
        location / {{
            default_type application/json;
            return 404 '{{"error":{{"message":"no such route"}}}}';
        }}
    }}
}}
"""
    )


def start_nginx(workdir: Path, port: int, pinning: Pinning, cores: tuple[int, ...]) -> Managed:
    return _run("nginx", workdir, port, pinning, cores, lambda d: render_config(d, port))


def _run(
    name: str,
    workdir: Path,
    port: int,
    pinning: Pinning,
    cores: tuple[int, ...],
    config: Callable[[Path], str],
) -> Managed:
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    ngx_dir = workdir / name
    ngx_dir.mkdir(parents=True, exist_ok=True)
    conf = ngx_dir / "nginx.conf"
    conf.write_text(config(ngx_dir))
    proc = start(
        name,
        [binary, "-e", str(ngx_dir / "nginx-error.log"), "-p", str(ngx_dir), "-c", str(conf)],
        log_dir=workdir,
        cores=cores,
        pinning=pinning,
    )
    wait_port(port, 10, proc.proc)
    return proc


def render_proxy_config(workdir: Path, port: int, upstream_port: int) -> str:
    """nginx as a plain reverse proxy (keep-alive to the upstream, no auth, no logging): what any
    proxy costs on this machine, as a reference for the gateways."""
    tmp = workdir
    return (
        _PREAMBLE.format(tmp=tmp)
        + f"""
    upstream bench_upstream {{ server 127.0.0.1:{upstream_port}; keepalive 256; keepalive_requests 100000000; }}
    server {{
        listen 127.0.0.1:{port} backlog=8192;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""
    )


def start_nginx_proxy(
    workdir: Path, port: int, upstream_port: int, pinning: Pinning, cores: tuple[int, ...]
) -> Managed:
    return _run(
        "nginx-proxy", workdir, port, pinning, cores, lambda d: render_proxy_config(d, port, upstream_port)
    )
