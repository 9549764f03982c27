"""A real IRC server for the channel tests: Debian's ``ngircd``, on loopback ports, with a generated
configuration (no DNS, ident or PAM lookups) and a TLS listener using a self-signed certificate
made here. ``IrcClient`` is a second, plain connection the tests talk through."""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

NGIRCD = shutil.which("ngircd") or ("/usr/sbin/ngircd" if Path("/usr/sbin/ngircd").exists() else None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key (PEM files in ``folder``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _der_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_integer(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading zero keeps it positive
    return b"\x02" + _der_length(len(raw)) + raw


def dh_params() -> Path | None:
    """DH parameters for ngircd's TLS listener, made once per machine (``openssl dhparam
    -dsaparam`` is fast; GnuTLS reads PKCS#3), so ngircd does not spend seconds generating its own
    at every start; None without the openssl tool (ngircd then generates them)."""
    import tempfile

    from cryptography.hazmat.primitives import serialization

    path = Path(tempfile.gettempdir()) / "sovereign-test-ngircd-dh.pem"
    if path.exists():
        return path
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    made = subprocess.run([openssl, "dhparam", "-dsaparam", "2048"], capture_output=True, check=False)
    if made.returncode != 0:
        return None
    numbers = serialization.load_pem_parameters(made.stdout).parameter_numbers()
    body = _der_integer(numbers.p) + _der_integer(numbers.g)  # PKCS#3: SEQUENCE {prime, base}
    der = b"\x30" + _der_length(len(body)) + body
    encoded = base64.encodebytes(der).decode().replace("\n", "")
    pem = "-----BEGIN DH PARAMETERS-----\n" + "\n".join(encoded[i:i + 64] for i in range(0, len(encoded), 64))
    scratch = path.with_suffix(f".{os.getpid()}")
    scratch.write_text(pem + "\n-----END DH PARAMETERS-----\n")
    scratch.replace(path)  # atomic: parallel sessions never read half a file
    return path


class Ngircd:
    """One ngircd process; ``restart()`` stops it and starts it again on the same ports."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port, self.tls_port = _free_port(), _free_port()
        self.cert, self.key = self_signed(folder)
        self.config = folder / "ngircd.conf"
        self.config.write_text(f"""[Global]
Name = irc.sovereign.test
Info = sovereign test server
Listen = 127.0.0.1
Ports = {self.port}
MotdPhrase = sovereign test server
PidFile = {folder}/ngircd.pid
ServerUID = 0
ServerGID = 0
[Limits]
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 30
PingTimeout = 120
PongTimeout = 20
[Options]
DNS = no
Ident = no
PAM = no
[SSL]
{f"DHFile = {dh}" if (dh := dh_params()) else ""}
CertFile = {self.cert}
KeyFile = {self.key}
Ports = {self.tls_port}
""")
        self.process: subprocess.Popen | None = None
        self.log = open(folder / "ngircd.log", "ab")

    def start(self) -> Ngircd:
        assert NGIRCD is not None
        self.process = subprocess.Popen([NGIRCD, "--nodaemon", "--passive", "--config", str(self.config)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ngircd exited: {(self.folder / 'ngircd.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("ngircd did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> float:
        """Stop, start again; returns the monotonic time at which it listens again."""
        self.stop()
        self.start()
        return time.monotonic()

    def close(self) -> None:
        self.stop()
        self.log.close()


class IrcClient:
    """A plain, blocking IRC client (a person in the channel) reading on a background thread."""

    def __init__(self, port: int, nick: str, user: str = "person") -> None:
        import queue
        import threading

        self.nick = nick
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.settimeout(None)  # the reader thread waits as long as the server is quiet
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.raw: list[bytes] = []
        self._buffer = b""
        self.send(f"NICK {nick}")
        self.send(f"USER {user} 0 * :{nick}")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.expect(lambda line: b" 001 " in line, timeout=10)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self._buffer += data
            while b"\r\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\r\n", 1)
                if line.startswith(b"PING"):
                    self.send("PONG" + line.decode("latin-1")[4:])
                self.raw.append(line)
                self.lines.put(line)

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode("utf-8") + b"\r\n")

    def expect(self, matches, timeout: float = 20) -> bytes:
        """The next line (from now on) for which ``matches(line)`` holds; AssertionError after ``timeout``."""
        import queue

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.nick}: no matching line in {timeout}s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if matches(line):
                return line

    def close(self) -> None:
        try:
            self.send("QUIT :bye")
        except OSError:
            pass
        self.sock.close()
