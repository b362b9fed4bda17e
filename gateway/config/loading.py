"""Loading the configuration: `load_config` reads the TOML file given at load time
(DEFAULT_CONFIG_PATH for the daemon) and lays the environment over it:
`BADGE_GATEWAY_ATTENDANCE__DEBOUNCE_SECONDS=5` sets `[attendance] debounce_seconds`.
`config_from_dict` does the same for a dict shaped like the file. Every section refuses
unknown keys, and a bad file is refused whole with every problem named by its dotted path
(gateway.config.problems).
"""

from __future__ import annotations

import stat
import tomllib
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    SettingsError,
    TomlConfigSettingsSource,
)

from gateway.config.problems import describe_all, describe_env_parse_error
from gateway.config.settings import GatewayConfig, file_layer
from gateway.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/badge-gateway/gateway.toml")


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> GatewayConfig:
    """The configuration in the TOML file at `path`, with the environment laid over it."""
    path = Path(path)
    _check_is_file(path)
    with file_layer(lambda settings_cls: _TomlFile(settings_cls, path)):
        return _build(path)


def config_from_dict(data: Mapping[str, Any], source: str) -> GatewayConfig:
    """The configuration in `data` (shaped like the TOML file), with the environment over it.

    `source` names where `data` comes from, for error messages.
    """
    with file_layer(lambda settings_cls: InitSettingsSource(settings_cls, init_kwargs=dict(data))):
        return _build(source)


def _check_is_file(path: Path) -> None:
    # The TOML source silently skips a missing file; the daemon must not.
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(path, ["no such file"]) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror}"]) from None
    if not stat.S_ISREG(mode):
        raise ConfigError(path, ["not a regular file"])


def _build(origin: Path | str) -> GatewayConfig:
    try:
        return GatewayConfig()
    except ValidationError as exc:
        # Not chained: pydantic's own message shows every value, secrets included.
        raise ConfigError(origin, describe_all(exc)) from None
    except SettingsError as exc:
        raise ConfigError(origin, [describe_env_parse_error(exc)]) from None


class _TomlFile(TomlConfigSettingsSource):
    """The TOML source, turning an unreadable file or a syntax error into a ConfigError."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        self._path = path  # before super().__init__, which reads the file
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        try:
            return super()._read_file(file_path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(self._path, [f"TOML syntax error: {exc}"]) from exc
        except OSError as exc:
            raise ConfigError(self._path, [f"cannot read the file: {exc.strerror}"]) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(self._path, [f"the file is not UTF-8 text: {exc}"]) from exc
