"""PSE, PPSE and application selection (EMV Book 1 §12; JR/T 0025.4; docs/card-profile.md §3–4)."""

from __future__ import annotations

from typing import Any

from citycard.chip.image import CardImage, cell_key


def test_pse_on_contact_only(term: Any, h: Any) -> None:
    term.card.power_on("contact")
    assert term.select(h.PPSE).sw == 0x6A82
    term.card.power_on("contactless")
    assert term.select(h.PSE).sw == 0x6A82


def test_ppse_lists_contactless_applications(term: Any, h: Any) -> None:
    assert term.card.power_on("contactless") == bytes.fromhex("3B80800101")
    resp = term.select(h.PPSE)
    assert resp.sw == 0x9000
    assert resp.tags["4F"].hex().upper() == h.DEBIT
    assert resp.tags["50"] == b"PBOC DEBIT" and resp.tags["87"] == b"\x01"
    fci = term.select(h.DEBIT)
    assert (
        fci.tags["9F38"].hex().upper() == "9F66049F7A019F02069F03069F1A0295055F2A029A039C019F37049F21039F4E14"
    )


def test_no_contactless_product(make_terminal: Any, demo_keys: Any, h: Any) -> None:
    from citycard.chip.personalise import ProductProfile, personalise

    t = make_terminal(personalise(ProductProfile(contactless=False), 5, demo_keys))
    t.card.power_on("contactless")
    resp = t.select(h.PPSE)
    assert resp.sw == 0x9000 and "4F" not in resp.tags
    assert t.select(h.DEBIT).sw == 0x6A82
    t.card.power_on("contact")
    assert t.select(h.DEBIT).sw == 0x9000


def test_partial_name_and_next_occurrence(dual_image: bytes, make_terminal: Any, h: Any) -> None:
    t = make_terminal(CardImage.from_json(dual_image))
    t.card.power_on()
    assert t.read(1, 1).sw == 0x6A82  # nothing selected yet
    t.select(h.PSE)
    assert t.read(1, 1).tags["4F"].hex().upper() == h.DEBIT
    assert t.read(1, 2).tags["4F"].hex().upper() == h.CREDIT
    assert t.read(1, 3).sw == 0x6A83
    first = t.select("A000000333")
    assert first.sw == 0x9000 and first.tags["84"].hex().upper() == h.DEBIT
    second = t.select("A000000333", p2=2)
    assert second.sw == 0x9000 and second.tags["84"].hex().upper() == h.CREDIT
    assert "DF4D" not in second.tags  # no EC in the credit application
    assert t.select("A000000333", p2=2).sw == 0x6A82
    assert t.select("A000000334").sw == 0x6A82


def test_select_parameter_errors(term: Any, h: Any) -> None:
    term.card.power_on()
    assert term.send("00A4040408A00000033301010100").sw == 0x6A86
    assert term.send("00A4080008A00000033301010100").sw == 0x6A86
    assert term.send("00A40000023F0000").sw == 0x6A82
    assert term.send("00A4040011" + "A0" * 17 + "00").sw == 0x6700


def test_blocked_application_selects_with_6283(image: CardImage, make_terminal: Any, h: Any) -> None:
    image.nvm[cell_key(h.DEBIT, "blocked")] = True
    t = make_terminal(image)
    t.card.power_on()
    resp = t.select(h.DEBIT)
    assert resp.sw == 0x6283 and resp.tags["84"].hex().upper() == h.DEBIT
    # the application can only go online; an offline EC approval is refused
    t.gpo_contact(100)
    assert t.generate_ac(0x40, h.cdol1_data(100)).tags["9F27"] == b"\x00"
    t.card.power_on()
    t.select(h.DEBIT)
    t.gpo_contact(100)
    assert t.generate_ac(0x80, h.cdol1_data(100)).tags["9F27"] == b"\x80"


def test_blocked_card_answers_6a81(image: CardImage, make_terminal: Any, h: Any) -> None:
    image.nvm["card.blocked"] = True
    t = make_terminal(image)
    t.card.power_on()
    assert t.select(h.PSE).sw == 0x6A81
    assert t.select(h.DEBIT).sw == 0x6A81


def test_power_off_resets_volatile_state(term: Any, h: Any) -> None:
    term.start_contact()
    term.card.power_off()
    term.card.power_on()
    assert term.get_data("9F36").sw == 0x6985
    term.select(h.DEBIT)
    assert term.generate_ac(0x40, h.cdol1_data()).sw == 0x6985
