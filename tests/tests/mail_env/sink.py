"""An SMTP sink for idsync's mail tests: aiosmtpd on 127.0.0.1:PORT that
writes each message it accepts to DIR as one JSON file (the envelope's
recipients, the decoded subject, Message-ID, Content-Type, the decoded
text and HTML parts, and the message as received), written under a
temporary name and renamed, so that the test never reads half a file.
Decoding here (Python's email package) keeps MIME out of the Rust test.
Runs until SIGTERM.

With CERT and KEY it offers STARTTLS and requires it before MAIL; each
message records whether it came over TLS.

Usage: python sink.py PORT DIR [CERT KEY]
"""

import email
import email.policy
import json
import os
import signal
import ssl
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = f"{time.time_ns()}-{self.count}"
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        seen = {
            "rcpt": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "from": envelope.mail_from,
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "content_type": msg.get_content_type(),
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
            "raw": raw.decode("utf-8", "replace"),
        }
        tmp = os.path.join(self.folder, name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(seen, f)
        os.rename(tmp, os.path.join(self.folder, name + ".json"))
        return "250 OK"


def main():
    port, folder = int(sys.argv[1]), sys.argv[2]
    tls = {}
    if len(sys.argv) > 4:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
        tls = {"tls_context": context, "require_starttls": True}
    controller = Controller(Sink(folder), hostname="127.0.0.1", port=port, **tls)
    controller.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
