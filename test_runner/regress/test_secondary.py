"""Secondary locations: the attached node uploads a heatmap of its resident
layers, a secondary node downloads them ahead of time, and a migration to
the secondary (generation + 1) reads without downloading anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.neon_fixtures import NeonEnvBuilder, NeonPageserver
from fixtures.pageserver_http import PageserverApiException
from fixtures.remote import make_writer, shared_local, wait_active, wait_uploaded
from fixtures.s3 import MotoServer
from fixtures.utils import wait_until


def layer_files(directory: Path) -> set[str]:
    if not directory.exists():
        return set()
    return {p.name for p in directory.iterdir() if "__" in p.name and not p.name.endswith("___temp")}


def secondary_dir(ps: NeonPageserver, tenant_id: str, timeline_id: str) -> Path:
    return ps.workdir / "secondary" / tenant_id / timeline_id


def test_secondary_warm_migration_s3(moto_server: MotoServer, neon_env_builder: NeonEnvBuilder):
    """Attached on A, secondary on B (moto S3): B downloads what the heatmap
    names, refuses reads; A goes stale, B becomes AttachedSingle with
    generation 2 and reads every recorded LSN identically with no on-demand
    download."""
    bucket = "pageserver"
    moto_server.create_bucket(bucket)
    neon_env_builder.num_pageservers = 2
    neon_env_builder.pageserver_config_overrides["remote_storage"] = moto_server.remote_storage_config(bucket)
    # The test decides when heatmaps go up.
    neon_env_builder.pageserver_config_overrides["heatmap_upload_period"] = "0s"
    env = neon_env_builder.init_start()
    a, b = env.pageservers
    ca, cb = a.http_client(), b.http_client()
    w = make_writer(ca, conf={"compaction_period": "0s"})
    t, tl = w.tenant_id, w.timeline_id
    lsns = [w.put_batches(30) for _ in range(3)]
    ca.timeline_checkpoint(t, tl)
    wait_uploaded(ca, t, tl)

    # A secondary before any heatmap exists: nothing to follow yet.
    assert cb.location_config(t, "Secondary") == {"mode": "Secondary", "generation": None}
    code, status = cb.secondary_download(t)
    assert code == 200, status
    assert status["heatmap_generation"] is None and status["layers_total"] == 0, status

    # A secondary serves nothing and changes nothing.
    for call in (
        lambda: cb.test_get_value(t, tl, "00" + "0" * 34, "0/16B5A50"),
        lambda: cb.timeline_create(t),
        lambda: cb.tenant_delete(t),
        lambda: cb.tenant_status(t),
    ):
        with pytest.raises(PageserverApiException) as e:
            call()
        assert e.value.status_code == 409 and "secondary location" in e.value.msg, e.value
    with pytest.raises(PageserverApiException) as e:
        ca.secondary_status(t)
    assert e.value.status_code == 409 and "attached" in e.value.msg

    uploaded = ca.heatmap_upload(t)
    resident_on_a = layer_files(a.timeline_dir(t, tl))
    assert uploaded == {"uploaded": True, "layers": len(resident_on_a), "reason": None}, uploaded
    heatmap = json.loads(moto_server.client().get_object(Bucket=bucket, Key=f"tenants/{t}/heatmap-v1.json")["Body"].read())
    assert heatmap["generation"] == 1
    [hl] = heatmap["timelines"]
    assert hl["timeline_id"] == tl
    assert {layer["name"] for layer in hl["layers"]} == resident_on_a

    # A pass that cannot finish in 0 ms answers 202 and goes on.
    code, _ = cb.secondary_download(t, wait_ms=0)
    assert code == 202
    code, status = cb.secondary_download(t)
    assert code == 200, status
    total_bytes = sum(layer["metadata"]["file_size"] for layer in hl["layers"])
    assert status["heatmap_generation"] == 1
    assert status["layers_total"] == status["layers_downloaded"] == len(resident_on_a), status
    assert status["bytes_total"] == status["bytes_downloaded"] == total_bytes, status
    assert status["last_error"] is None and status["passes"] >= 2
    assert layer_files(secondary_dir(b, t, tl)) == resident_on_a
    downloaded = cb.metric_value("pageserver_secondary_layers_downloaded_total")
    assert downloaded == len(resident_on_a)
    assert cb.metric_value("pageserver_secondary_bytes_downloaded_total") == total_bytes
    # Another pass downloads nothing again, and removes what is not named.
    stray = secondary_dir(b, t, tl) / ("0" * 36 + "-" + "F" * 36 + "__" + "0" * 16 + "-" + "1" * 16)
    stray.write_bytes(b"not a layer the heatmap names")
    code, status = cb.secondary_download(t)
    assert code == 200 and status["layers_downloaded"] == len(resident_on_a)
    assert cb.metric_value("pageserver_secondary_layers_downloaded_total") == downloaded
    assert not stray.exists()
    assert cb.metric_value("pageserver_layer_downloads_total") == 0

    # Migration: A stale (it stops writing heatmaps), B attached with generation 2.
    assert ca.location_config(t, "AttachedStale", generation=1) == {"mode": "AttachedStale", "generation": 1}
    skipped = ca.heatmap_upload(t)
    assert skipped["uploaded"] is False and "stale" in skipped["reason"]
    assert cb.location_config(t, "AttachedSingle", generation=2) == {"mode": "AttachedSingle", "generation": 2}
    wait_active(cb, t)
    assert cb.metric_value("pageserver_secondary_layers_adopted_total") == len(resident_on_a)
    assert cb.timeline_detail(t, tl)["awaits_download"] is False
    assert not (b.workdir / "secondary" / t).exists()
    w.check(lsns, client=cb)
    assert cb.metric_value("pageserver_layer_downloads_total") == 0
    ca.location_config(t, "Detached")
    assert not a.tenant_dir(t).exists()

    # B writes the heatmap now, under its generation.
    assert cb.heatmap_upload(t)["uploaded"] is True
    heatmap = json.loads(moto_server.client().get_object(Bucket=bucket, Key=f"tenants/{t}/heatmap-v1.json")["Body"].read())
    assert heatmap["generation"] == 2


def test_secondary_background_and_modes(neon_env_builder: NeonEnvBuilder):
    """Heatmaps and downloads on their periods, without being asked; an
    attached tenant moved to Secondary keeps its layers; the mode survives a
    restart; a node whose generation is no longer current writes no heatmap;
    bad requests are refused."""
    shared_local(neon_env_builder, pageservers=2)
    neon_env_builder.pageserver_config_overrides["heatmap_upload_period"] = "1s"
    neon_env_builder.pageserver_config_overrides["secondary_download_interval"] = "1s"
    env = neon_env_builder.init_start()
    a, b = env.pageservers
    ca, cb = a.http_client(), b.http_client()
    w = make_writer(ca, conf={"compaction_period": "0s"})
    t, tl = w.tenant_id, w.timeline_id
    lsn = w.put_batches(20)
    ca.timeline_checkpoint(t, tl)
    wait_uploaded(ca, t, tl)
    cb.location_config(t, "Secondary")

    def caught_up() -> None:
        st = cb.secondary_status(t)
        assert st["layers_total"] > 0 and st["layers_downloaded"] == st["layers_total"], st
        assert layer_files(secondary_dir(b, t, tl)) == layer_files(a.timeline_dir(t, tl))

    wait_until(caught_up, timeout=30, interval=0.3)
    # The secondary location comes back after a restart, files and all.
    b.restart()
    wait_until(caught_up, timeout=30, interval=0.3)

    # Bad input.
    for body in ({"mode": "Secondary", "generation": 3}, {"mode": "Primary"}):
        res = cb.put(f"/v1/tenant/{t}/location_config", json=body)
        assert res.status_code == 400, res.text
    res = cb.post(f"/v1/tenant/{t}/secondary/download", params={"wait_ms": 10**9})
    assert res.status_code == 400 and "wait_ms" in res.json()["msg"]
    unknown = "0" * 31 + "7"
    with pytest.raises(PageserverApiException) as e:
        cb.secondary_status(unknown)
    assert e.value.status_code == 404

    # A, attached, moves to Secondary: its resident layers stay local.
    before = layer_files(a.timeline_dir(t, tl))
    assert ca.location_config(t, "Secondary") == {"mode": "Secondary", "generation": None}
    assert not a.tenant_dir(t).exists()
    assert layer_files(secondary_dir(a, t, tl)) == before
    code, status = ca.secondary_download(t)
    assert code == 200 and status["layers_downloaded"] == len(before), status
    assert ca.metric_value("pageserver_secondary_layers_downloaded_total") == 0

    # B attaches (generation 2 from the listing); A attaches with generation 1
    # as if it missed the migration: its heatmap uploads are refused.
    assert cb.location_config(t, "AttachedSingle")["generation"] == 2
    wait_active(cb, t)
    assert cb.metric_value("pageserver_layer_downloads_total") == 0
    w.check([lsn], client=cb)
    assert cb.metric_value("pageserver_layer_downloads_total") == 0
    ca.location_config(t, "AttachedSingle", generation=1)
    wait_active(ca, t)
    refused = ca.heatmap_upload(t)
    assert refused["uploaded"] is False and "generation 00000002 exists" in refused["reason"], refused
    ca.location_config(t, "Detached")
    # Detach removes a secondary location, and an unknown one is fine.
    cb.location_config(t, "Secondary")
    assert (b.workdir / "secondary" / t).exists()
    cb.tenant_detach(t)
    assert not (b.workdir / "secondary" / t).exists() and not b.tenant_dir(t).exists()
