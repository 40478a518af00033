"""What the benchmark scripts share: a free loopback port, and a server started pinned to
CPU 0 that is listening before it is handed back."""
import socket
import subprocess
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_pinned(name, cmd, port, env=None):
    """Runs `cmd` on CPU 0 and waits (10 s at most) until it accepts on `port`."""
    p = subprocess.Popen(["taskset", "-c", "0"] + cmd, env=env,
                         stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"{name} did not start")
