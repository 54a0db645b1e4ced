"""Notifications of finished runs: who is told (:mod:`.decide`), what they are told (:mod:`.message`),
how it travels (:mod:`.channels`) and the per-recipient delivery record (:mod:`.delivery`)."""
