"""Queue ids: short, from Postfix-like digits, and as random as they look."""

from __future__ import annotations

from collections import Counter

from relay.smtp.trace import new_queue_id

ALPHABET = set("0123456789BCDFGHJKLMNPQRSTVWXZ")


def test_queue_ids_are_twelve_digits_of_the_alphabet_and_do_not_repeat() -> None:
    ids = [new_queue_id() for _ in range(20_000)]
    assert {len(i) for i in ids} == {12}
    assert set("".join(ids)) <= ALPHABET
    assert len(set(ids)) == len(ids)


def test_every_digit_appears_about_equally_in_every_position() -> None:
    ids = [new_queue_id() for _ in range(30_000)]  # ~1,000 of each digit per position
    for position in range(12):
        counts = Counter(i[position] for i in ids)
        assert set(counts) == ALPHABET
        assert min(counts.values()) > 700 and max(counts.values()) < 1300
