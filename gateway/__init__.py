"""badge-gateway: badge taps to ONSS attendance registrations, durable first.

The tree, from a tap to the ONSS (docs/design.md draws it):

- the tap path, at the top of the package: `tap` (one tap, start to beep), `attendance`
  (the IN/OUT rules), `badges` (the employer's register), `clock` (time as evidence),
  `models` and `identifiers` (the values), `readers` (drivers from the configuration);
- `journal/` (the SQLite file and its one writer) over `evidence/` (the hash chain);
- `feedback/` (what the worker sees and hears), `uplink/` (delivery to the ONSS),
  `watch` (what the evidence must record that no tap reports);
- `report/` (export, outages, the employer's report), `control/` (the control socket);
- `daemon` (start-up, serve, shutdown), `cli/` (the `badge-gateway` command);
- `config/`, `system/` (systemd, logs, keys), `errors` (one GatewayError hierarchy).
"""

__version__ = "0.1.0"
