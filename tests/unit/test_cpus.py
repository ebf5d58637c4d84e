"""The thread count's default: the cores this process may use, not the host's."""

from __future__ import annotations

import os
from pathlib import Path

from selftune.server import cpus


def test_a_cgroup_v2_quota_is_read_in_cpus(tmp_path: Path):
    v2 = tmp_path / "cpu.max"
    v2.write_text("150000 100000\n")
    assert cpus.cgroup_quota(v2, (tmp_path / "none", tmp_path / "none")) == 1.5
    v2.write_text("max 100000\n")
    assert cpus.cgroup_quota(v2, (tmp_path / "none", tmp_path / "none")) is None


def test_a_cgroup_v1_quota_is_read_and_minus_one_is_none(tmp_path: Path):
    quota, period = tmp_path / "cfs_quota_us", tmp_path / "cfs_period_us"
    quota.write_text("200000\n")
    period.write_text("100000\n")
    assert cpus.cgroup_quota(tmp_path / "no-v2", (quota, period)) == 2.0
    quota.write_text("-1\n")
    assert cpus.cgroup_quota(tmp_path / "no-v2", (quota, period)) is None


def test_the_quota_bounds_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(cpus, "cgroup_quota", lambda: 1.5)
    assert cpus.usable_cpus() == 2  # a quota of 1.5 CPUs: two threads, not 64
    monkeypatch.setattr(cpus, "cgroup_quota", lambda: None)
    assert cpus.usable_cpus() == 64
    monkeypatch.setattr(cpus, "cgroup_quota", lambda: 0.2)
    assert cpus.usable_cpus() == 1
