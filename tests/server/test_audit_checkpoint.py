"""Issue 11: a signed checkpoint of the audit head, kept outside the database, catches what
the chain alone cannot: records cut from the end together with a rewound head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from evaccess.domain.errors import AuditChainBroken, ConfigurationError
from evaccess.server.audit import AuditEntry
from evaccess.server.audit_anchor import AuditAnchor, read_head
from evaccess.server.db.models import AuditHead, AuditRecord
from evaccess.server.keys import FileKeyProvider
from tests.conftest import SeededRandom


async def append_many(ctx, n: int) -> None:
    for i in range(n):
        async with ctx.db.transaction() as session:
            await ctx.audit.append(session, AuditEntry(action="test.event", details={"i": i}))


@pytest.fixture
def anchor(ctx, tmp_path: Path) -> AuditAnchor:
    return AuditAnchor(tmp_path / "elsewhere" / "audit-checkpoints.jsonl", ctx.keys, ctx.clock)


async def checkpoint(ctx, anchor: AuditAnchor):
    async with ctx.db.snapshot() as session:
        return await anchor.write(session)


async def check(ctx, anchor: AuditAnchor):
    async with ctx.db.snapshot() as session:
        assert (await ctx.audit.verify(session)).ok, "the chain itself must verify"
        return await anchor.check(session)


async def cut_the_end(ctx, keep: int) -> None:
    """Delete every record after ``keep`` and rewind the head to the new last one."""
    async with ctx.db.transaction() as session:
        last = await session.get(AuditRecord, keep)
        assert last is not None
        await session.execute(delete(AuditRecord).where(AuditRecord.seq > keep))
        await session.execute(
            update(AuditHead).where(AuditHead.id == 1).values(seq=keep, mac=last.mac)
        )


async def test_no_checkpoint_yet(ctx, anchor):
    await append_many(ctx, 3)
    assert anchor.latest() is None
    assert await check(ctx, anchor) is None
    assert not anchor.path.exists()  # verifying never creates the file


async def test_checkpoint_records_the_head_and_later_records_still_verify(ctx, anchor, clock):
    await append_many(ctx, 4)
    written = await checkpoint(ctx, anchor)
    async with ctx.db.snapshot() as session:
        head = await read_head(session)
    assert (written.seq, written.head, written.at) == (4, head.digest, clock.now())
    clock.advance(3600)
    await append_many(ctx, 2)
    assert await check(ctx, anchor) == written
    line = json.loads(anchor.path.read_text().splitlines()[-1])
    assert line["seq"] == 4
    assert line["head"] == head.digest.hex()


async def test_truncated_chain_with_rewound_head_fails_after_a_checkpoint(ctx, anchor):
    await append_many(ctx, 6)
    await checkpoint(ctx, anchor)
    await cut_the_end(ctx, keep=4)
    with pytest.raises(AuditChainBroken) as failure:
        await check(ctx, anchor)
    message = str(failure.value)
    assert "\n" not in message
    assert "ends at record 4" in message and "checkpoint at record 6" in message


async def test_rewritten_end_fails_at_the_checkpointed_seq(ctx, anchor):
    await append_many(ctx, 6)
    await checkpoint(ctx, anchor)
    await cut_the_end(ctx, keep=4)
    await append_many(ctx, 3)  # as long as before, and longer: a different record 6
    with pytest.raises(AuditChainBroken, match="record 6 differs from the checkpoint"):
        await check(ctx, anchor)


async def test_the_latest_checkpoint_counts(ctx, anchor):
    await append_many(ctx, 2)
    await checkpoint(ctx, anchor)
    await append_many(ctx, 3)
    await checkpoint(ctx, anchor)
    await cut_the_end(ctx, keep=3)  # still longer than the first checkpoint
    with pytest.raises(AuditChainBroken, match="checkpoint at record 5"):
        await check(ctx, anchor)


@pytest.mark.parametrize("field", ["seq", "head", "at", "sig"])
async def test_tampered_checkpoint_fails(ctx, anchor, field):
    await append_many(ctx, 6)
    await checkpoint(ctx, anchor)
    line = json.loads(anchor.path.read_text())
    line[field] = {
        "seq": 4,
        "head": "00" * 32,
        "at": "2030-01-01T00:00:00+00:00",
        "sig": "11" * 32,
    }[field]
    anchor.path.write_text(json.dumps(line) + "\n")
    with pytest.raises(AuditChainBroken, match="bad signature"):
        anchor.latest()


async def test_garbage_in_the_checkpoint_file_fails(ctx, anchor):
    await append_many(ctx, 1)
    await checkpoint(ctx, anchor)
    with anchor.path.open("a") as out:
        out.write("not a checkpoint\n")
    with pytest.raises(AuditChainBroken, match="line 2 is not a checkpoint"):
        anchor.latest()


async def test_another_servers_checkpoints_in_the_same_file_are_not_ours(ctx, anchor, tmp_path):
    """A shared default file: a checkpoint signed under another audit key (another data
    directory) is another chain's."""
    await append_many(ctx, 2)
    ours = await checkpoint(ctx, anchor)
    other_keys = FileKeyProvider(tmp_path / "other-keys", SeededRandom(seed=99))
    other = AuditAnchor(anchor.path, other_keys, ctx.clock)
    assert other.latest() is None
    async with ctx.db.read() as session:
        await other.write(session)
    assert anchor.latest() == ours


async def test_checkpoint_refuses_a_chain_that_already_disagrees(ctx, anchor):
    await append_many(ctx, 5)
    await checkpoint(ctx, anchor)
    await cut_the_end(ctx, keep=2)
    with pytest.raises(AuditChainBroken):
        await checkpoint(ctx, anchor)
    assert len(anchor.path.read_text().splitlines()) == 1


async def test_an_unusable_checkpoint_file_is_one_clear_error(ctx, tmp_path):
    await append_many(ctx, 1)
    (tmp_path / "a-directory").mkdir()
    anchor = AuditAnchor(tmp_path / "a-directory", ctx.keys, ctx.clock)
    with pytest.raises(ConfigurationError, match="EVACCESS_AUDIT_CHECKPOINT_FILE"):
        anchor.latest()
    with pytest.raises(ConfigurationError, match="a-directory"):
        await checkpoint(ctx, anchor)


async def spread_over_lanes(ctx, lanes: int) -> None:
    """``lanes`` transactions appending at once (PostgreSQL gives each its own lane)."""
    import asyncio

    gate = asyncio.Event()
    appended = 0

    async def one(i: int) -> None:
        nonlocal appended
        async with ctx.db.transaction() as session:
            await ctx.audit.append(session, AuditEntry(action="test.lane", details={"i": i}))
            appended += 1
            if appended == lanes:
                gate.set()
            await gate.wait()

    await asyncio.gather(*(one(i) for i in range(lanes)))


@pytest.fixture
def lanes_in_use(ctx):
    if ctx.db.engine.dialect.name != "postgresql":
        pytest.skip("lanes are PostgreSQL's")


async def test_a_checkpoint_of_several_lanes_holds_while_they_grow(ctx, anchor, lanes_in_use):
    await append_many(ctx, 2)
    await spread_over_lanes(ctx, 3)
    written = await checkpoint(ctx, anchor)
    assert [lane for lane, _, _ in written.lanes] == [1, 2, 3]
    line = json.loads(anchor.path.read_text())
    assert [lane for lane, _, _ in line["lanes"]] == [1, 2, 3]
    assert line["seq"] == 5
    await spread_over_lanes(ctx, 4)
    assert await check(ctx, anchor) == written


async def test_a_lane_cut_away_with_its_head_fails_after_a_checkpoint(ctx, anchor, lanes_in_use):
    await spread_over_lanes(ctx, 3)
    await checkpoint(ctx, anchor)
    async with ctx.db.transaction() as session:  # the chain alone cannot see this
        await session.execute(delete(AuditRecord).where(AuditRecord.lane == 2))
        await session.execute(
            update(AuditHead).where(AuditHead.id == 2).values(seq=0, mac=bytes(32))
        )
    with pytest.raises(AuditChainBroken, match="audit lane 2 ends at record 0, before its"):
        await check(ctx, anchor)


async def test_the_lanes_of_a_checkpoint_are_signed(ctx, anchor, lanes_in_use):
    await spread_over_lanes(ctx, 2)
    await checkpoint(ctx, anchor)
    line = json.loads(anchor.path.read_text())
    line["lanes"] = line["lanes"][:1]
    anchor.path.write_text(json.dumps(line) + "\n")
    with pytest.raises(AuditChainBroken, match="bad signature"):
        anchor.latest()
