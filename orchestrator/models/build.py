"""Build a simulated fleet table from a site config (dry-runs and backtests)."""

from __future__ import annotations

import numpy as np

from orchestrator.errors import ConfigError
from orchestrator.models.config import HashpivotConfig
from orchestrator.models.fleet import FleetTable
from orchestrator.models.hardware import HardwareProfile, builtin_catalog


def profile_catalog(config: HashpivotConfig) -> dict[str, HardwareProfile]:
    """The built-in catalog with the config's own profiles added (same name replaces)."""
    catalog = dict(builtin_catalog())
    for profile in config.hardware:
        catalog[profile.name] = profile
    return catalog


def build_fleet(config: HashpivotConfig, *, since_s: float = 0.0) -> FleetTable:
    """One row per node of `config.fleet`, steady in each group's initial mode."""
    catalog = profile_catalog(config)
    used: list[str] = []
    for i, group in enumerate(config.fleet):
        if group.profile not in catalog:
            known = ", ".join(sorted(catalog))
            raise ConfigError(
                f"unknown hardware profile {group.profile!r}; known: {known}",
                field=f"fleet[{i}].profile",
            )
        if group.mode == "ai" and catalog[group.profile].gpus == 0:
            raise ConfigError("an ASIC group cannot start in ai mode", field=f"fleet[{i}].mode")
        if group.profile not in used:
            used.append(group.profile)
    site_index = {s.name: j for j, s in enumerate(config.sites)}
    counts = [g.count for g in config.fleet]
    node_profiles = np.repeat([used.index(g.profile) for g in config.fleet], counts)
    node_sites = np.repeat([site_index[g.site] for g in config.fleet], counts)
    modes = np.repeat([int(g.initial_mode) for g in config.fleet], counts)
    names: list[str] = []
    next_number: dict[str, int] = {}
    for group in config.fleet:
        prefix = group.name_prefix or f"{group.site}-{group.profile}"
        start = next_number.get(prefix, 0)
        names.extend(f"{prefix}-{start + k:05d}" for k in range(group.count))
        next_number[prefix] = start + group.count
    return FleetTable.build(
        [catalog[name] for name in used],
        config.sites,
        node_profiles.astype(np.int32),
        names=names,
        node_sites=node_sites,
        modes=modes,
        since_s=since_s,
    )
