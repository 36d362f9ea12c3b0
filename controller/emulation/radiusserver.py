"""A private FreeRADIUS server for tests and benchmarks: its own directory under /tmp with a
generated configuration (one client, the EAP module with EAP-TLS and PEAP-MSCHAPv2, the
password users; a PEAP Access-Accept names the inner identity in User-Name, which the
controller compares with the EAP identity), test certificates, a free UDP port on
127.0.0.1; started as `freeradius -f -d DIR` and ended by its PID. The packaged
configuration and service are never used.

`Pki` makes the X.1124 certificate-based mechanism's material: a CA, the server's
certificate, one client certificate per identity (CN = the identity, which the server
checks against the EAP identity), and a second, unrelated CA for refused certificates.
"""
from __future__ import annotations

import datetime
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.emulation.processes import wait_until


def _write(path: Path, data: str | bytes, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


class Pki:
    """Test certificates (ECDSA P-256) in `directory`: `<name>.pem` and `<name>.key`."""

    def __init__(self, directory: str | Path, ca_name: str = "crs test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = self._cert(ca_name, self.ca_key.public_key(), self.ca_key, ca=True,
                                  issuer=ca_name)
        self.ca_name = ca_name
        self.ca = self._save("ca", self.ca_cert, self.ca_key)[0]

    def _cert(self, cn: str, pub, signer, ca: bool = False, issuer: str | None = None,
              usage=None) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                        issuer or self.ca_name)]))
             .public_key(pub).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return b.sign(signer, hashes.SHA256())

    def _save(self, name: str, cert: x509.Certificate, key) -> tuple[Path, Path]:
        pem = _write(self.dir / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM),
                     0o644)
        k = _write(self.dir / f"{name}.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return pem, k

    def issue(self, name: str, cn: str, server: bool = False) -> tuple[Path, Path]:
        """A certificate for `cn` signed by this CA: (cert file, key file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        return self._save(name, self._cert(cn, key.public_key(), self.ca_key, usage=usage), key)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


RADIUSD_CONF = """\
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = {dir}
sbindir = /usr/sbin
logdir = {dir}
raddbdir = {dir}
radacctdir = {dir}
name = freeradius
confdir = {dir}
modconfdir = {dir}
certdir = {dir}/certs
cadir = {dir}/certs
run_dir = {dir}
db_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = {dir}/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 16384
hostname_lookups = no
log {{
  destination = files
  file = {dir}/radius.log
  auth = yes
  auth_badpass = no
  auth_goodpass = no
}}
security {{
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = no
}}
thread pool {{
  start_servers = 2
  max_servers = 4
  min_spare_servers = 1
  max_spare_servers = 3
  max_requests_per_server = 0
}}
client nas {{
  ipaddr = 127.0.0.1
  secret = "{secret}"
  require_message_authenticator = yes
  nas_type = other
}}
modules {{
  mschap {{
  }}
  eap {{
    default_eap_type = {default_eap}
    timer_expire = 60
    ignore_unknown_eap_types = no
    max_sessions = 4096
    tls-config tls-common {{
      private_key_file = {dir}/certs/server.key
      certificate_file = {dir}/certs/server.pem
      ca_file = {dir}/certs/ca.pem
      ca_path = {dir}/certs
      fragment_size = 1024
      check_cert_cn = %{{User-Name}}
      cipher_list = "DEFAULT"
      tls_min_version = "1.2"
      tls_max_version = "1.2"
      ecdh_curve = "prime256v1"
      cache {{
        enable = no
      }}
      verify {{
      }}
      ocsp {{
        enable = no
      }}
    }}
    tls {{
      tls = tls-common
    }}
    peap {{
      tls = tls-common
      default_eap_type = mschapv2
      copy_request_to_tunnel = yes
      use_tunneled_reply = yes
      virtual_server = "inner-tunnel"
      require_client_cert = no
    }}
    mschapv2 {{
    }}
  }}
}}
server default {{
  listen {{
    type = auth
    ipaddr = 127.0.0.1
    port = {port}
  }}
  authorize {{
    eap {{
      ok = return
    }}
  }}
  authenticate {{
    eap
  }}
  post-auth {{
    if (&session-state:User-Name) {{
      update reply {{
        &User-Name := &session-state:User-Name
      }}
    }}
    Post-Auth-Type REJECT {{
      eap
    }}
  }}
}}
server inner-tunnel {{
  authorize {{
{users}
    eap {{
      ok = return
    }}
    mschap
  }}
  authenticate {{
    Auth-Type MS-CHAP {{
      mschap
    }}
    eap
  }}
  post-auth {{
    update outer.session-state {{
      &User-Name := &User-Name
    }}
  }}
}}
"""


class FreeRadius:
    """One FreeRADIUS process (see module doc). `users`: identity -> password for
    PEAP-MSCHAPv2; EAP-TLS admits any certificate of `pki`'s CA whose CN is the identity."""

    def __init__(self, pki: Pki, users: dict[str, str] | None = None, secret: str | None = None,
                 default_eap: str = "tls", port: int | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="crs-radius-"))
        os.chmod(self.dir, 0o700)
        self.pki, self.users = pki, dict(users or {})
        self.secret = secret or secrets.token_hex(16)
        self.default_eap = default_eap
        self.port = port or free_udp_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "radius.log"

    def secret_file(self, path: str | Path) -> Path:
        """The shared secret as the controller reads it (mode 0600)."""
        return _write(Path(path), self.secret + "\n")

    def _config(self) -> None:
        certs = self.dir / "certs"
        certs.mkdir(exist_ok=True)
        shutil.copy(self.pki.ca, certs / "ca.pem")
        pem, key = self.pki.issue("server", "radius.crs.test", server=True)
        shutil.copy(pem, certs / "server.pem")
        shutil.copy(key, certs / "server.key")
        users = "\n".join(
            f'    if (&User-Name == "{_plain(u)}") {{\n'
            f'      update control {{\n        &Cleartext-Password := "{_plain(p)}"\n'
            f'      }}\n    }}' for u, p in self.users.items())
        _write(self.dir / "radiusd.conf", RADIUSD_CONF.format(
            dir=self.dir, secret=_plain(self.secret), port=self.port,
            default_eap=self.default_eap, users=users))
        _write(self.dir / "dictionary", "")

    def start(self, timeout: float = 20.0) -> "FreeRadius":
        if self.proc is None:
            self._config()
        out = open(self.dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(["freeradius", "-f", "-d", str(self.dir), "-l", "stdout"],
                                     stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        out.close()
        try:
            wait_until(lambda: self.proc.poll() is not None or _port_taken(self.port), timeout,
                       f"FreeRADIUS listening on 127.0.0.1:{self.port}")
        finally:
            if self.proc.poll() is not None:
                raise RuntimeError(f"FreeRADIUS exited ({self.proc.returncode}):\n"
                                   + self.output()[-3000:])
        return self

    def output(self) -> str:
        p = self.dir / "stdout.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        """End this server (by its PID); the configuration stays for `start` again."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _plain(v: str) -> str:
    if any(c in v for c in '"\\\n\r%$'):
        raise ValueError(f"{v!r}: quotes, backslashes, newlines, % and $ are not allowed")
    return v
