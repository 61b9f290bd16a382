"""Explicit opt-outs (DESIGN §5): a state a run may accept, by name, and always recorded."""

from __future__ import annotations

from dataclasses import dataclass

#: state -> the flag that accepts it
FLAGS = {"partial": "allow-partial", "unanchored": "allow-unanchored", "unverifiable": "allow-unverifiable"}


@dataclass(frozen=True)
class OptOuts:
    partial: bool = False
    unanchored: bool = False
    unverifiable: bool = False

    def names(self) -> list[str]:
        return [flag for state, flag in FLAGS.items() if getattr(self, state)]

    def refused(self, states: list[str]) -> list[str]:
        """The states the run is in that these opt-outs do not accept."""
        return [s for s in states if not getattr(self, s)]

    @staticmethod
    def hints(states: list[str]) -> str:
        return ", ".join(f"--{FLAGS[s]}" for s in states)
