"""A completed assessment's proof stored in the object store under its CID and pinned through
the IPFS HTTP RPC client against the local pinning peer (which recomputes the CID); a lying
pinning service is refused and the pin retried later."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Engine

from conveyor.egress import parse_allowlist
from conveyor.packs.agri import assessment, pipeline, store
from conveyor.packs.agri.ipfs import IpfsRpc
from conveyor.packs.agri.objectstore import FileStore
from conveyor.packs.agri.peers import IpfsPeer
from conveyor.packs.agri.policies import plot_from, policy_from
from conveyor.packs.agri.proofs import cid_of
from conveyor.packs.agri.samples import DEMO_WALLET, drought_history, square
from conveyor.packs.kit import EgressPolicy


def assessed(ledger: Engine) -> uuid.UUID:
    number = f"PROOF-{uuid.uuid4().hex[:8]}"
    planting = date.today() - timedelta(days=60)
    store.create_policy(
        ledger,
        policy_from(
            {
                "policy_number": number,
                "farmer_wallet": DEMO_WALLET,
                "crop": "maize",
                "planting_date": planting,
                "sum_insured": "100.00",
            }
        ),
    )
    field = {"name": "p", "policy_number": number, "geometry": square(30.0, -3.0)}
    (plot,) = store.create_plots(ledger, [plot_from(field)])
    end = date.today() - timedelta(days=1)
    plot_id = uuid.UUID(plot["id"])
    store.store_weather(ledger, plot_id, drought_history(end), "test")
    row = assessment.assess(ledger, plot_id, end - timedelta(days=29), end)
    return uuid.UUID(row["id"])


def test_proofs_are_stored_and_pinned_and_a_lying_pinner_is_refused(
    ledger: Engine, tmp_path: Path
) -> None:
    assessment_id = assessed(ledger)
    objects = FileStore(tmp_path)
    peer = IpfsPeer().start()
    try:
        pinner = IpfsRpc(peer.url, EgressPolicy(allow=parse_allowlist([peer.allow_entry])))
        peer.script("wrong_cid")
        row = assessment.publish_proof(ledger, assessment_id, objects, pinner)
        assert row["proof_key"] and row["pinned"] is False and "pinning failed" in row["error"]
        assert assessment_id in pipeline.unpublished_proofs(ledger, pinning=True)
        row = assessment.publish_proof(ledger, assessment_id, objects, pinner)
        assert row["pinned"] is True and row["error"] is None
        assert assessment_id not in pipeline.unpublished_proofs(ledger, pinning=True)
        stored = objects.get(row["proof_key"])
        assert cid_of(stored) == row["proof_cid"] == row["proof_key"][7:-5]
        assert peer.pins[row["proof_cid"]] == stored
        pinner.close()
    finally:
        peer.stop()
