"""Ship exports to boards over SSH: push, verify, bench there, set a board up.

The workstation's side of the device step, without TensorFlow: the system OpenSSH client
runs every remote command (docs/fleet.md says why), boards are handled in parallel threads,
and every board gets a one-line outcome.
"""

from edgekit.fleet.devices import Device, DevicesFile, load_devices, resolve_targets

__all__ = ["Device", "DevicesFile", "load_devices", "resolve_targets"]
