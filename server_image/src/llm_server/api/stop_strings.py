"""Stop strings: find the first match in the generated text and never emit any part of it.

While streaming, text that ends with the beginning of a stop string is held back until the next
token shows whether the stop string completes. With include_stop_str_in_output the output
ends after the stop string instead. Text added as not searchable (the first min_tokens
tokens, as in vLLM) is emitted at once and never part of a match.
"""

from __future__ import annotations


class StopStringMatcher:
    def __init__(self, stop_strings: list[str], include_stop: bool = False) -> None:
        self._stops = [stop for stop in stop_strings if stop]
        self._include_stop = include_stop
        self._holdback = max((len(stop) for stop in self._stops), default=1) - 1
        self._text = ""
        self._emitted = 0
        self._search_floor = 0  # matches start at or after this
        self.matched = False

    @property
    def text(self) -> str:
        """The generated text so far, cut before the stop string once one matched."""
        return self._text

    def add(self, delta: str, searchable: bool = True) -> str:
        """Append decoded text; return what is now safe to emit."""
        if self.matched or not delta:
            return ""
        if not searchable:
            self._text += delta
            self._search_floor = len(self._text)
            return self.flush()
        search_from = max(self._search_floor, len(self._text) - self._holdback)
        self._text += delta
        found = [(pos, stop) for stop in self._stops
                 if (pos := self._text.find(stop, search_from)) >= 0]  # fmt: skip
        if found:
            pos, stop = min(found, key=lambda match: match[0])
            self._text = self._text[: pos + len(stop) if self._include_stop else pos]
            self.matched = True
            return self.flush()
        safe_end = len(self._text) - self._partial_match_length()
        if safe_end <= self._emitted:
            return ""
        out = self._text[self._emitted : safe_end]
        self._emitted = safe_end
        return out

    def _partial_match_length(self) -> int:
        """Length of the longest tail of the unemitted text that starts some stop string."""
        pending = len(self._text) - self._emitted
        longest = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, pending), longest, -1):
                if self._text.endswith(stop[:length]):
                    longest = length
                    break
        return longest

    def flush(self) -> str:
        """At the end of generation: everything not yet emitted."""
        out = self._text[self._emitted :]
        self._emitted = len(self._text)
        return out
