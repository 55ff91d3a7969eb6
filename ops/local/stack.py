"""The local stack behind `make run` and `make test`: find or start every service, then run.

    python ops/local/stack.py run            # serve everything on http://127.0.0.1:8000
    python ops/local/stack.py test [ARGS]    # run pytest against real Redis, MariaDB and moto

Redis and MySQL come from REDIS_URL / DATABASE_URL when set, else the servers on localhost,
else servers this script starts under .run/ (installing Debian's packages when root and they are
missing). SNS/SQS is always moto in server mode, started here; the topic, queue, DLQ, redrive
policy and raw subscription are created the way Terraform creates them. Debian's `chromium`,
which the buyer page's browser tests drive (Playwright cannot download a browser here), is
installed when missing. Ctrl-C stops all that this script started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / ".run"
BIN = Path(sys.executable).parent
sys.path[:0] = [str(ROOT), str(ROOT / "ops" / "local")]

children: list[subprocess.Popen] = []


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not port_open(host, port):
        if time.monotonic() > deadline:
            sys.exit(f"[stack] {what} did not open {host}:{port} within {seconds:.0f}s")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cmd: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    RUN.mkdir(exist_ok=True)
    log = open(RUN / log_name, "ab")  # noqa: SIM115 - lives as long as the child
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    children.append(proc)
    return proc


def apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        sys.exit(f"[stack] {' '.join(packages)} missing and not root: install it, or set the URL")
    say(f"installing {' '.join(packages)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        check=True,
        env=env,
    )


def find_binary(*names: str) -> str | None:
    for name in names:
        for folder in (None, "/usr/sbin", "/usr/bin", "/usr/local/bin"):
            found = shutil.which(name, path=folder) if folder else shutil.which(name)
            if found:
                return found
    return None


def ensure_chromium() -> None:
    """Debian's chromium for the buyer page's browser tests (tests/test_shop.py), installed
    when missing and root; otherwise those tests fail, saying so."""
    if find_binary("chromium"):
        return
    if os.geteuid() == 0:
        apt_install("chromium")
    else:
        say(
            "chromium missing and not root: the browser tests fail without it "
            "(apt-get install chromium)"
        )


def ensure_redis(db: int) -> str:
    """REDIS_URL, or Redis on 127.0.0.1:6379, or one started here."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    if not port_open("127.0.0.1", 6379):
        start_redis(6379, RUN / "redis", "redis.log")
    return f"redis://127.0.0.1:6379/{db}"


def start_redis(port: int, datadir: Path, log_name: str) -> subprocess.Popen:
    """A redis-server of our own on 127.0.0.1:port that keeps nothing on disk (installing
    Debian's package when root and it is missing)."""
    server = find_binary("redis-server")
    if server is None:
        apt_install("redis-server")
        server = find_binary("redis-server")
    datadir.mkdir(parents=True, exist_ok=True)
    say(f"starting redis-server on 127.0.0.1:{port}")
    proc = spawn(
        [
            server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(datadir),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        log_name,
    )
    wait_for_port("127.0.0.1", port, "redis-server")
    return proc


def _mysql_accepts(url: str) -> bool:
    import pymysql

    parts = urlsplit(url.replace("mysql+pymysql", "mysql"))
    try:
        pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            connect_timeout=2,
        ).close()
        return True
    except pymysql.MySQLError:
        return False


def _start_mariadb() -> None:
    server = find_binary("mariadbd", "mysqld")
    if server is None:
        apt_install("mariadb-server")
        server = find_binary("mariadbd", "mysqld")
    datadir = RUN / "mysql"
    user = ["--user=root"] if os.geteuid() == 0 else []
    if not (datadir / "mysql").exists():
        say(f"initialising a MariaDB data directory in {datadir}")
        installer = find_binary("mariadb-install-db", "mysql_install_db")
        subprocess.run(
            [
                installer,
                "--no-defaults",  # the system's my.cnf would switch to user mysql and its paths
                f"--datadir={datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *user,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    say("starting MariaDB on 127.0.0.1:3306")
    spawn(
        [
            server,
            "--no-defaults",
            f"--datadir={datadir}",
            "--bind-address=127.0.0.1",
            "--port=3306",
            f"--socket={datadir / 'mysqld.sock'}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=256M",
            *user,
        ],
        "mariadb.log",
    )
    wait_for_port("127.0.0.1", 3306, "MariaDB")


def ensure_mysql(database: str, *, fresh: bool) -> str:
    """DATABASE_URL, or MySQL/MariaDB on 127.0.0.1:3306 as root, or one started here."""
    import pymysql

    url = os.environ.get("DATABASE_URL") or f"mysql+pymysql://root@127.0.0.1:3306/{database}"
    server_url = url.rsplit("/", 1)[0]
    if not os.environ.get("DATABASE_URL") and not _mysql_accepts(server_url):
        if port_open("127.0.0.1", 3306):
            sys.exit(
                "[stack] a server on 127.0.0.1:3306 refuses root without a password: "
                "set DATABASE_URL"
            )
        _start_mariadb()
    parts = urlsplit(url.replace("mysql+pymysql", "mysql"))
    name = parts.path.lstrip("/")
    conn = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
    )
    with conn.cursor() as cur:
        if fresh:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
    conn.close()
    return url


def start_moto(port: int, log_name: str = "moto.log") -> str:
    """moto in server mode on 127.0.0.1:port; returns its endpoint URL."""
    if port_open("127.0.0.1", port):
        sys.exit(f"[stack] port {port} is taken; set MOTO_PORT")
    say(f"starting moto server (SNS+SQS) on 127.0.0.1:{port}")
    moto = [str(BIN / "python"), str(ROOT / "ops" / "local" / "moto_server.py")]  # SQS fix
    spawn([*moto, "-H", "127.0.0.1", "-p", str(port)], log_name)
    wait_for_port("127.0.0.1", port, "moto server")
    return f"http://127.0.0.1:{port}"


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }


def stop_children(*_: object) -> None:
    for proc in reversed(children):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in reversed(children):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    children.clear()


def development_identity(env: dict[str, str]) -> dict[str, str]:
    """The development token secret and issuer (`flask --app web token buyer NAME` mints tokens
    for them) and payment webhook secret, unless the caller's environment sets its own; a
    production process refuses these values."""
    from plumbing import settings

    chosen = {
        "JWT_SECRET": settings.DEVELOPMENT_JWT_SECRET,
        "JWT_ISSUER": settings.DEVELOPMENT_JWT_ISSUER,
        "PAYMENT_WEBHOOK_SECRET": settings.DEVELOPMENT_PAYMENT_WEBHOOK_SECRET,
    }
    return {name: env.get(name) or value for name, value in chosen.items()}


def run() -> int:
    """Set up, then serve web (8000), worker, relay and Flower (5555) in the foreground."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # the Procfile's commands
    env["REDIS_URL"] = ensure_redis(0)
    env["DATABASE_URL"] = ensure_mysql("ticketing", fresh=False)
    env.update(aws_env(start_moto(int(os.environ.get("MOTO_PORT", "4566")))))
    os.environ.update(env)
    from aws_resources import create_messaging

    env.update(create_messaging("ticket").env())
    env.setdefault("MONITOR_BROKER_URL", env["REDIS_URL"])
    env.setdefault("FLOWER_UNAUTHENTICATED_API", "true")  # local only: Flower's API on loopback
    env.setdefault("GUNICORN_BIND", "127.0.0.1:8000")
    env.update(development_identity(env))
    ensure_chromium()
    say("migrating: alembic upgrade head")
    subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, check=True)
    flask = [str(BIN / "flask"), "--app", "web"]
    loaded = subprocess.run([*flask, "catalog", "load"], cwd=ROOT, env=env)
    if loaded.returncode == 3:  # events whose seat state Redis lost: rebuilt from MySQL
        say("rebuilding the seat state Redis lost: flask --app web seats rebuild")
        subprocess.run([*flask, "seats", "rebuild"], cwd=ROOT, env=env, check=True)
    elif loaded.returncode:
        raise SystemExit(f"catalog load failed (exit status {loaded.returncode})")
    say("serving http://127.0.0.1:8000 (purchase, query, events), relay, Flower :5555")
    honcho = subprocess.Popen(
        [str(BIN / "honcho"), "--no-colour", "start", "web", "worker", "relay", "flower"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    children.append(honcho)
    return honcho.wait()


def test(pytest_args: list[str]) -> int:
    """Set up Redis, a fresh test database and chromium, then run pytest (it starts its own
    moto)."""
    ensure_chromium()
    env = dict(os.environ)
    env["REDIS_URL"] = os.environ.get("TEST_REDIS_URL") or ensure_redis(15)
    env["DATABASE_URL"] = os.environ.get("TEST_DATABASE_URL") or ensure_mysql(
        os.environ.get("TEST_DATABASE_NAME", "ticketing_test"), fresh=True
    )
    for name in (
        "AWS_ENDPOINT_URL",
        "DATABASE_READ_URL",
        "TICKET_TOPIC_ARN",
        "TICKET_QUEUE_URL",
        "TICKET_DLQ_URL",
    ):
        env.pop(name, None)  # the suite makes its own moto server and queues
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *pytest_args], cwd=ROOT, env=env)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("run", "test"):
        print(__doc__)
        return 2
    # Also when started in the background, where SIGINT arrives ignored: it must stop the stack.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    try:
        if sys.argv[1] == "run":
            return run()
        return test(sys.argv[2:])
    except KeyboardInterrupt:
        return 130
    finally:
        stop_children()


if __name__ == "__main__":
    sys.exit(main())
