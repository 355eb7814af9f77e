#!/usr/bin/python3
"""An SMTP server for the mail reporter's tests (Debian's python3-aiosmtpd).

It listens on 127.0.0.1 on a port of the kernel's choosing, prints that
port on a line of its own once it accepts connections, and saves each
message it receives to DIR/NNN.json with its envelope, whether it came
over TLS and as which user. Each AUTH attempt appends a line to
DIR/auth.log. It runs until killed.

aiosmtpd's Controller wants a fixed port (it connects to it to check that
the server is up), so this serves the same aiosmtpd SMTP protocol from a
socket bound to port 0 instead.
"""

import argparse
import asyncio
import json
import os
import socket
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("--dir", required=True)
parser.add_argument("--cert", help="PEM certificate for STARTTLS (none: no STARTTLS)")
parser.add_argument("--key", help="PEM private key of --cert")
parser.add_argument("--user", help="require AUTH as this user")
parser.add_argument("--password")
args = parser.parse_args()


class Handler:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        auth = session.auth_data
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "login": auth.login.decode() if isinstance(auth, LoginPassword) else None,
            "data": envelope.original_content.decode("utf-8", "replace"),
        }
        path = os.path.join(args.dir, "%03d.json" % self.count)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK saved"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == args.user.encode()
        and auth_data.password == args.password.encode()
    )
    with open(os.path.join(args.dir, "auth.log"), "a") as f:
        f.write("%s %s tls=%s\n" % (mechanism, "ok" if ok else "refused", session.ssl is not None))
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


async def main():
    tls = None
    if args.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)

    def factory():
        return SMTP(
            handler,
            hostname="smtp.test",
            tls_context=tls,
            require_starttls=tls is not None,
            auth_required=bool(args.user),
            auth_require_tls=tls is not None,
            authenticator=authenticator if args.user else None,
        )

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = await asyncio.get_running_loop().create_server(factory, sock=sock)
    print(sock.getsockname()[1], flush=True)
    await server.serve_forever()


handler = Handler()
asyncio.run(main())
