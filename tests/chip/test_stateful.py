"""Hypothesis state machine: random sequences of real commands (purchases contact and contactless, online
transactions, loads by script, PIN tries, power cycles, and commands out of sequence in whatever phase those
left the card) against a model of the EC balance and counters.

Invariants after every step: the balance equals the model's (debited only by a TC, set only by an
accepted load), stays within 0..limit, the ATC never goes backwards, logs hold at most 10 records, and no
journal is left behind."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from citycard.chip.card import Card
from citycard.chip.image import CardImage
from citycard.chip.sequence import COMMANDS
from citycard.crypto.cryptograms import arpc_method1, ec_load_script
from citycard.crypto.pin import plaintext_offline_pin_block

AID = "A000000333010101"
amounts = st.integers(min_value=0, max_value=12_000)


class CardMachine(RuleBasedStateMachine):
    h: Any
    image_json: bytes
    keys: Any

    @initialize()
    def setup(self) -> None:
        image = CardImage.from_json(self.image_json)
        self.card = Card(image, self.h.counter_rng(b"stateful"))
        app = image.applications[0]
        pan = app.data["5A"].hex().upper().rstrip("F")
        self.t = self.h.Terminal(self.card, self.keys, pan=pan, psn="01")
        self.balance = image.get_int(f"{AID}.ec_balance")
        self.atc = 0
        self.pin_tries = 3
        self.online: tuple[int, bytes] | None = None
        self.loaded = False
        self.powered = False

    def _cell(self, name: str) -> int:
        return self.card.image.get_int(f"{AID}.{name}")

    @rule(amount=amounts, p1=st.sampled_from([0x00, 0x40, 0x80]), ec=st.booleans())
    def contact_purchase(self, amount: int, p1: int, ec: bool) -> None:
        self.card.power_on("contact")
        self.online = None
        self.powered = True
        assert self.t.select(self.h.DEBIT).sw == 0x9000
        assert self.t.gpo_contact(amount, ec).sw == 0x9000
        resp = self.t.generate_ac(p1, self.h.cdol1_data(amount))
        assert resp.sw == 0x9000
        cid = resp.tags["9F27"]
        can_offline = ec and 0 < amount <= self.balance and amount <= 50_000
        assert (cid == b"\x40") == (p1 == 0x40 and can_offline)
        if cid == b"\x40":
            assert p1 == 0x40 and can_offline
            self.balance -= amount
        elif cid == b"\x80":
            assert p1 != 0x00
            self.online = (int.from_bytes(resp.tags["9F36"], "big"), resp.tags["9F26"])
            self.loaded = False
        else:
            assert p1 == 0x00

    @rule(amount=amounts, online_required=st.booleans())
    def tap(self, amount: int, online_required: bool) -> None:
        self.card.power_on("contactless")
        self.online = None
        self.powered = True
        self.t.select(self.h.PPSE)
        assert self.t.select(self.h.DEBIT).sw == 0x9000
        ttq = "20800000" if online_required else "20000000"
        resp = self.t.gpo(self.h.qpboc_pdol_data(amount, ttq=ttq))
        assert resp.sw == 0x9000
        if resp.tags["9F27"] == b"\x40":
            assert not online_required and 0 < amount <= self.balance
            self.balance -= amount
        assert int(resp.tags["9F5D"].hex()) == self.balance

    @precondition(lambda self: self.online is not None)
    @rule(
        new_balance=st.integers(min_value=0, max_value=120_000), approve=st.booleans(), tamper=st.booleans()
    )
    def load(self, new_balance: int, approve: bool, tamper: bool) -> None:
        assert self.online is not None
        atc, arqc = self.online
        if approve:
            arpc = arpc_method1(self.t.session_key("ac", atc), arqc, b"00")
            self.t.generate_ac(0x40, b"00" + bytes(9) + arpc + b"00")
        script = bytearray(ec_load_script(self.t.session_key("mac", atc), atc, arqc, new_balance))
        if tamper:
            script[-2] ^= 0x40
        sw = self.t.send(bytes(script)).sw
        if self.loaded:  # once per transaction, checked before the MAC
            assert sw == 0x6985
        elif tamper:
            assert sw == 0x6988
        elif new_balance > 100_000:
            assert sw == 0x6A80
        else:
            assert sw == 0x9000
            self.balance, self.loaded = new_balance, True

    @rule(right=st.booleans())
    def verify(self, right: bool) -> None:
        self.card.power_on("contact")
        self.online = None
        self.powered = True
        self.t.select(self.h.DEBIT)
        self.t.gpo_contact(0, ec=False)
        sw = self.t.send(
            bytes.fromhex("0020008008") + plaintext_offline_pin_block("123456" if right else "000000")
        ).sw
        if self.pin_tries == 0:
            assert sw == 0x6983
        elif right:
            assert sw == 0x9000
            self.pin_tries = 3
        else:
            self.pin_tries -= 1
            assert sw == 0x63C0 | self.pin_tries

    @rule(data=st.data())
    def out_of_sequence(self, data: st.DataObject) -> None:
        """Any command the card does not take in the phase the last steps left it in (chip.sequence), with
        any data: refused 6985, the card's memory and phase as they were."""
        if not self.powered:  # a fresh session after a power cycle, the application selected or not
            self.card.power_on("contact")
            self.powered, self.online = True, None
            if data.draw(st.booleans(), label="select"):
                assert self.t.select(self.h.DEBIT).sw == 0x9000
        phase = self.card.phase
        refused = sorted(ins for ins, taken in COMMANDS.items() if phase not in taken)
        if not refused:
            return
        ins = data.draw(st.sampled_from(refused), label="instruction")
        body = data.draw(st.binary(max_size=60), label="data")
        cla = data.draw(st.sampled_from([0x00, 0x80, 0x84]), label="class")
        memory = copy.deepcopy(self.card.image.nvm)
        sw = self.t.send(bytes((cla, ins, data.draw(st.integers(0, 255)), 0, len(body))) + body).sw
        assert sw in (0x6985, 0x6E00), hex(sw)  # or the class the instruction is not sent in
        assert self.card.image.nvm == memory and self.card.phase is phase

    @rule()
    def power_cycle(self) -> None:
        self.card.power_off()
        self.online = None
        self.powered = False

    @invariant()
    def consistent(self) -> None:
        image = self.card.image
        assert image.get_int(f"{AID}.ec_balance") == self.balance
        assert 0 <= self.balance <= image.get_int(f"{AID}.ec_limit")
        atc = self._cell("atc")
        assert atc >= self.atc
        self.atc = atc
        assert image.get_int("pin.tries") == self.pin_tries
        for log in ("txn_log", "load_log"):
            value = image.nvm[f"{AID}.{log}"]
            assert isinstance(value, list) and len(value) <= 10
        assert not image.journal and not image.journal_committed


def test_card_state_machine(registered_image: bytes, h: Any, demo_keys: Any) -> None:
    CardMachine.h = h
    CardMachine.image_json = registered_image
    CardMachine.keys = demo_keys
    runner = CardMachine.TestCase
    runner.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
    runner().runTest()
