"""A blocking AMI session for the deploy command: log in, reload a module, run a CLI command.

The deploy runs as a command-line tool, one site at a time: plain sockets with timeouts
are simpler than the bridge's asyncio link and cannot stall an event loop."""

from __future__ import annotations

import socket
import ssl

from ccbridge.config.model import Site


class AmiError(RuntimeError):
    """The site's AMI did not answer, refused the login or an action."""


class AmiSession:
    def __init__(self, site: Site, timeout: float = 5.0) -> None:
        self.site = site
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._n = 0

    def __enter__(self) -> AmiSession:
        a = self.site.ami
        port = a.link_port  # the bridge's own: TLS when sites.X.ami.tls, verified
        try:
            raw = socket.create_connection((a.host, port), timeout=self.timeout)
            self._sock = raw
            if a.tls is not None:
                ctx = ssl.create_default_context(cafile=a.tls.ca)
                self._sock = ctx.wrap_socket(raw, server_hostname=a.host)
            self._sock.settimeout(self.timeout)
            banner = self._read_until(b"\r\n")
        except OSError as exc:
            self.close()
            raise AmiError(f"AMI {a.host}:{port} does not answer: {exc}") from None
        if not banner.startswith(b"Asterisk Call Manager/"):
            self.close()
            raise AmiError(f"AMI {a.host}:{port}: not an AMI banner: {banner[:40]!r}")
        reply = self.action("Login", Username=a.username, Secret=a.secret.reveal(), Events="off")
        if reply.get("Response") != "Success":
            self.close()
            raise AmiError(f"AMI login refused at {a.host}:{port}: {reply.get('Message', '')}")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._sock is not None:
                self._send("Logoff", {})
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _read_until(self, mark: bytes) -> bytes:
        assert self._sock is not None
        while mark not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise OSError("AMI closed the connection")
            self._buf += chunk
        head, _, self._buf = self._buf.partition(mark)
        return head

    def _send(self, name: str, fields: dict[str, str]) -> str:
        assert self._sock is not None
        self._n += 1
        action_id = f"ccb-deploy-{self._n}"
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        lines += [f"{k}: {v}" for k, v in fields.items()]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    def action(self, name: str, **fields: str) -> dict[str, str]:
        """Send an action and return its response; `Output:` lines are joined with newlines."""
        try:
            action_id = self._send(name, fields)
            while True:
                block = self._read_until(b"\r\n\r\n").decode(errors="replace")
                msg: dict[str, str] = {}
                output: list[str] = []
                for line in block.split("\r\n"):
                    k, _, v = line.partition(": ")
                    if k == "Output":
                        output.append(v)
                    else:
                        msg.setdefault(k, v)
                if msg.get("ActionID") == action_id and "Response" in msg:
                    msg["Output"] = "\n".join(output)
                    return msg
        except OSError as exc:
            raise AmiError(f"AMI {self.site.ami.host}: {name}: {exc}") from None

    def command(self, cli: str) -> str:
        reply = self.action("Command", Command=cli)
        if reply.get("Response") not in ("Success", "Follows"):
            raise AmiError(f"AMI Command {cli!r}: {reply.get('Message', '')}")
        return reply.get("Output", "")

    def reload(self, module: str) -> None:
        reply = self.action("Reload", Module=module)
        if reply.get("Response") != "Success":
            raise AmiError(f"reload of {module} refused: {reply.get('Message', '')}")
