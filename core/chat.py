"""The one chat rendering of a row: used for generation (teachers), answer checking and training.

A row becomes system (only when non-empty), user, and assistant when a response is given; the
model's own chat template turns the messages into text.
"""

from __future__ import annotations


def build_messages(
    system_prompt: str | None, question: str, response: str | None = None
) -> list[dict[str, str]]:
    """The conversation for one row: system (only when non-empty), user, and assistant when given."""
    messages: list[dict[str, str]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": question})
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages
