"""The SMTP server Roster's tests send to: aiosmtpd (a real SMTP implementation), writing each
accepted message to a directory as it arrived on the wire. A recipient whose local part starts
with "reject" is refused for good (550), as a mail server refuses an unknown mailbox; one that
starts with "busy" is put off once (451, try again later), as a greylisting server does.

Usage: sink.py PORT DIRECTORY. Prints "ready" once it listens on 127.0.0.1:PORT.
"""

import os
import sys
import threading
import uuid

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.put_off = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("busy") and address not in self.put_off:
            self.put_off.add(address)
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        path = os.path.join(self.directory, uuid.uuid4().hex)
        with open(path + ".tmp", "wb") as out:
            out.write(envelope.original_content or envelope.content)
        os.rename(path + ".tmp", path + ".eml")
        return "250 Message accepted for delivery"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
