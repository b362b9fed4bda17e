"""`python -m onss_sim --dir DIR` (or `badge-gateway-sim`): run the ONSS simulator over HTTPS.

Creates the PKI in DIR if absent, registers the technical user and the declarations of
works, serves, and writes DIR/simulator.json (what a gateway needs to trust and use it).
SIGTERM or SIGINT stop it; simulator.json is then removed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from onss_sim.checks import DEFAULT_TYPE_VALUES, TYPE_VALUES
from onss_sim.files import write_atomically
from onss_sim.pki import PkiFiles, ensure_pki
from onss_sim.server import SimulatorServer, create_server

DEFAULT_DECLARATION = "1Y1002V9KLZ6Z"
DEFAULT_EMPLOYER = "0450905686"
# Checkinatwork: the WorkPlaceId is the declaration of works' number, the same site.
DEFAULT_WORKPLACE = DEFAULT_DECLARATION
INFO_FILE = "simulator.json"
CLIENT_ID_FILE = "client_id"

LOG = logging.getLogger("onss_sim")


def _declaration(text: str) -> tuple[str, list[str]]:
    declaration, _, employers = text.partition(":")
    listed = [e.strip() for e in employers.split(",") if e.strip()]
    if not declaration.strip() or not listed:
        raise argparse.ArgumentTypeError("expected DECLARATION:EMPLOYER[,EMPLOYER...]")
    return declaration.strip(), listed


def _workplace(text: str) -> tuple[str, list[str]]:
    try:
        return _declaration(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError("expected WORKPLACE:COMPANY[,COMPANY...]") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="badge-gateway-sim", description="A local simulator of the ONSS presence service."
    )
    parser.add_argument("--dir", type=Path, required=True, help="PKI and simulator.json")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument(
        "--declaration",
        type=_declaration,
        action="append",
        default=[],
        metavar="DECL:EMPLOYER[,EMPLOYER]",
        help=f"a known declaration of works (besides {DEFAULT_DECLARATION}); repeatable",
    )
    parser.add_argument(
        "--workplace",
        type=_workplace,
        action="append",
        default=[],
        metavar="WORKPLACE:COMPANY[,COMPANY]",
        help=f"a Checkinatwork WorkPlaceId known (besides {DEFAULT_WORKPLACE}) and the"
        " KBO/BCE numbers working there; repeatable",
    )
    parser.add_argument(
        "--type-values",
        choices=sorted(TYPE_VALUES),
        default=DEFAULT_TYPE_VALUES,
        help="the case of an item's type accepted: in/out (lower, default) or IN/OUT (upper);"
        " the other is refused with 400",
    )
    return parser.parse_args(argv)


def client_id_in(directory: Path) -> str:
    """The technical user's client id, kept in DIR so that it survives restarts."""
    path = directory / CLIENT_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    client_id = f"self_service_chaman_{secrets.randbelow(10**6):06d}_{secrets.token_hex(6)}"
    write_atomically(path, client_id.encode() + b"\n")
    return client_id


def configure(server: SimulatorServer, pki: PkiFiles, client_id: str, args: Any) -> None:
    sim = server.simulator
    with sim.lock:
        sim.tokens.add_client(client_id, pki.client_cert.read_text(), permitted=True)
        sim.config.type_values = args.type_values
        sim.book.set_declaration(DEFAULT_DECLARATION, [DEFAULT_EMPLOYER])
        for declaration, employers in args.declaration:
            known = sim.book.declarations.get(declaration, frozenset())
            sim.book.set_declaration(declaration, known | set(employers))
        sim.presences.set_workplace(DEFAULT_WORKPLACE, [DEFAULT_EMPLOYER])
        for workplace, companies in args.workplace:
            known = sim.presences.workplaces.get(workplace, frozenset())
            sim.presences.set_workplace(workplace, known | set(companies))


def info(server: SimulatorServer, pki: PkiFiles, client_id: str) -> dict[str, Any]:
    sim = server.simulator
    with sim.lock:
        declarations = {key: sorted(value) for key, value in sim.book.declarations.items()}
        type_values = sim.config.type_values
        workplaces = {key: sorted(value) for key, value in sim.presences.workplaces.items()}
    return {
        "base_url": sim.urls.base,
        "token_url": sim.urls.token,
        "soap_url": sim.urls.soap,
        "admin_url": sim.urls.admin,
        "ca_file": str(pki.ca_cert.resolve()),
        "client_id": client_id,
        "client_key_file": str(pki.client_key.resolve()),
        "client_cert_file": str(pki.client_cert.resolve()),
        "declarations": declarations,
        "workplaces": workplaces,
        "type_values": type_values,
        "pid": os.getpid(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="onss-sim: %(message)s")
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    info_path = directory / INFO_FILE
    info_path.unlink(missing_ok=True)  # a stale file must not send anyone to a dead port
    pki = ensure_pki(directory)
    client_id = client_id_in(directory)
    server = create_server(args.host, args.port, pki)
    configure(server, pki, client_id, args)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _setter(stop))
    serving = threading.Thread(target=server.serve_forever, args=(0.2,), name="serve")
    serving.start()
    try:
        write_atomically(info_path, json.dumps(info(server, pki, client_id), indent=2).encode())
        LOG.info("listening on %s (client id %s)", server.simulator.urls.origin, client_id)
        while not stop.wait(0.5):
            pass
    finally:
        LOG.info("stopping")
        server.shutdown()
        serving.join()
        server.server_close()
        info_path.unlink(missing_ok=True)
    return 0


def _setter(stop: threading.Event) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return handler


if __name__ == "__main__":
    sys.exit(main())
